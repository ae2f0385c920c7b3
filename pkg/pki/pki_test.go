package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGenerateAPIServerSANs(t *testing.T) {
	b := generate(t, testConfig(t))
	cert := readCert(t, b.APIServerCert)

	wantDNS := []string{
		"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "localhost", "node-1", "api.example.com",
	}
	for _, name := range wantDNS {
		if n := countFunc(cert.DNSNames, func(d string) bool { return d == name }); n != 1 {
			t.Errorf("DNS SAN %q appears %d times in %v, want once", name, n, cert.DNSNames)
		}
	}
	if len(cert.DNSNames) != len(wantDNS) {
		t.Errorf("DNS SANs = %v, want exactly %v", cert.DNSNames, wantDNS)
	}
	wantIPs := []string{"127.0.0.1", "::1", "10.43.0.1", "192.168.1.10", "203.0.113.5"}
	for _, s := range wantIPs {
		ip := net.ParseIP(s)
		if n := countFunc(cert.IPAddresses, ip.Equal); n != 1 {
			t.Errorf("IP SAN %s appears %d times in %v, want once", s, n, cert.IPAddresses)
		}
	}
	if len(cert.IPAddresses) != len(wantIPs) {
		t.Errorf("IP SANs = %v, want exactly %v", cert.IPAddresses, wantIPs)
	}
	if err := cert.VerifyHostname("203.0.113.5"); err != nil {
		t.Errorf("VerifyHostname(tls-san IP): %v", err)
	}
	if err := cert.VerifyHostname("api.example.com"); err != nil {
		t.Errorf("VerifyHostname(tls-san DNS): %v", err)
	}
}

func TestGenerateEtcdSANs(t *testing.T) {
	b := generate(t, testConfig(t))
	for _, path := range []string{b.EtcdServerCert, b.EtcdPeerCert} {
		cert := readCert(t, path)
		if !slices.Equal(cert.DNSNames, []string{"localhost", "node-1"}) {
			t.Errorf("%s: DNS SANs = %v, want [localhost node-1]", path, cert.DNSNames)
		}
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		if want := []string{"127.0.0.1", "::1", "192.168.1.10", "203.0.113.5"}; !slices.Equal(ips, want) {
			t.Errorf("%s: IP SANs = %v, want %v", path, ips, want)
		}
	}
}

func TestGenerateCAs(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	now := cfg.Now()
	for _, c := range caCases(b) {
		cert := readCert(t, c.cert)
		if want := c.prefix + strconv.FormatInt(now.Unix(), 10); cert.Subject.CommonName != want {
			t.Errorf("%s: CN = %q, want %q", c.cert, cert.Subject.CommonName, want)
		}
		if !cert.IsCA || !cert.BasicConstraintsValid {
			t.Errorf("%s: not a CA", c.cert)
		}
		if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; cert.KeyUsage != want {
			t.Errorf("%s: KeyUsage = %v, want %v", c.cert, cert.KeyUsage, want)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Errorf("%s: not self-signed: %v", c.cert, err)
		}
		if !cert.NotAfter.Equal(now.AddDate(10, 0, 0)) {
			t.Errorf("%s: NotAfter = %v, want 10 years from %v", c.cert, cert.NotAfter, now)
		}
		if !cert.NotBefore.Equal(now.Add(-time.Hour)) {
			t.Errorf("%s: NotBefore = %v, want %v", c.cert, cert.NotBefore, now.Add(-time.Hour))
		}
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: key is %T, want ECDSA P-256", c.cert, cert.PublicKey)
		}
		if len(cert.SubjectKeyId) == 0 {
			t.Errorf("%s: no SubjectKeyId", c.cert)
		}
	}
}

func TestGenerateLeaves(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	now := cfg.Now()
	for _, c := range leafCases(b) {
		t.Run(c.name, func(t *testing.T) {
			cert := readCert(t, c.cert)
			ca := readCert(t, c.ca)
			if cert.Subject.CommonName != c.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, c.cn)
			}
			if !slices.Equal(cert.Subject.Organization, c.orgs) {
				t.Errorf("O = %v, want %v", cert.Subject.Organization, c.orgs)
			}
			if !slices.Equal(cert.ExtKeyUsage, c.usages) {
				t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, c.usages)
			}
			if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; cert.KeyUsage != want {
				t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if !cert.NotBefore.Equal(now.Add(-time.Hour)) || !cert.NotAfter.Equal(now.Add(365*24*time.Hour)) {
				t.Errorf("validity %v..%v, want %v..%v", cert.NotBefore, cert.NotAfter, now.Add(-time.Hour), now.Add(365*24*time.Hour))
			}
			if n := cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", n)
			}
			if len(cert.AuthorityKeyId) == 0 || string(cert.AuthorityKeyId) != string(ca.SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want CA SubjectKeyId %x", cert.AuthorityKeyId, ca.SubjectKeyId)
			}
			if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", cert.PublicKey)
			}
			key, err := readKey(c.key)
			if err != nil {
				t.Fatal(err)
			}
			if !publicKeyMatches(cert, key) {
				t.Errorf("%s does not match %s", c.key, c.cert)
			}

			roots := x509.NewCertPool()
			roots.AddCert(ca)
			for _, usage := range c.usages {
				opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
				if _, err := cert.Verify(opts); err != nil {
					t.Errorf("verify against %s for usage %v: %v", c.ca, usage, err)
				}
			}
			if !slices.Contains(c.usages, x509.ExtKeyUsageServerAuth) {
				opts := x509.VerifyOptions{Roots: roots, CurrentTime: now}
				if _, err := cert.Verify(opts); err == nil {
					t.Error("client certificate verifies for server auth")
				}
			}
			other := x509.NewCertPool()
			for _, o := range caCases(b) {
				if o.cert != c.ca {
					other.AddCert(readCert(t, o.cert))
				}
			}
			opts := x509.VerifyOptions{Roots: other, CurrentTime: now, KeyUsages: c.usages}
			if _, err := cert.Verify(opts); err == nil {
				t.Error("leaf verifies against a CA that did not sign it")
			}
		})
	}
}

func TestGenerateFileModes(t *testing.T) {
	b := generate(t, testConfig(t))
	err := filepath.WalkDir(b.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		switch {
		case d.IsDir():
			want = 0o700
		case strings.HasSuffix(path, ".key"):
			want = 0o600
		case strings.HasSuffix(path, ".crt"), strings.HasSuffix(path, ".pub"), strings.HasSuffix(path, ".signing.pem"):
		default:
			t.Errorf("unexpected file %s", path)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{b.ServerCAKey, b.EtcdPeerCAKey, b.ServiceAccountKey, b.AdminKey, b.EtcdClientKey} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", path, st, err)
		}
	}
}

func TestGenerateIdempotent(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	before := snapshot(t, b.Dir)
	if len(before) != 44 {
		t.Errorf("first run wrote %d files, want 44", len(before))
	}
	if b2 := generate(t, cfg); b2 != b {
		t.Errorf("second Bundle = %+v, want %+v", b2, b)
	}
	if diff := changed(before, snapshot(t, b.Dir)); len(diff) != 0 {
		t.Errorf("second run changed %v", diff)
	}

	// 200 days later every leaf still has more than 90 days left.
	cfg.Now = clock(cfg.Now().Add(200 * 24 * time.Hour))
	generate(t, cfg)
	if diff := changed(before, snapshot(t, b.Dir)); len(diff) != 0 {
		t.Errorf("run 200 days later changed %v", diff)
	}
}

func TestGenerateSANChange(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)

	before := snapshot(t, b.Dir)
	cfg.SANs = append(slices.Clone(cfg.SANs), "new.example.com")
	generate(t, cfg)
	// The renewed certificate keeps its key (readers never see a pair
	// that does not match).
	want := relPaths(t, b, b.APIServerCert)
	if diff := changed(before, snapshot(t, b.Dir)); !slices.Equal(diff, want) {
		t.Errorf("adding a DNS SAN changed %v, want %v", diff, want)
	}
	if cert := readCert(t, b.APIServerCert); !slices.Contains(cert.DNSNames, "new.example.com") {
		t.Errorf("DNS SANs %v lack new.example.com", cert.DNSNames)
	}

	// IP SANs also go into the etcd server and peer certificates.
	before = snapshot(t, b.Dir)
	cfg.SANs = append(cfg.SANs, "10.9.8.7")
	generate(t, cfg)
	want = relPaths(t, b, b.APIServerCert, b.EtcdServerCert, b.EtcdPeerCert)
	if diff := changed(before, snapshot(t, b.Dir)); !slices.Equal(diff, want) {
		t.Errorf("adding an IP SAN changed %v, want %v", diff, want)
	}
	for _, path := range []string{b.APIServerCert, b.EtcdServerCert, b.EtcdPeerCert} {
		if cert := readCert(t, path); !slices.ContainsFunc(cert.IPAddresses, net.ParseIP("10.9.8.7").Equal) {
			t.Errorf("%s: IP SANs %v lack 10.9.8.7", path, cert.IPAddresses)
		}
	}

	// Removing a SAN keeps the certificate: it still covers what is asked.
	before = snapshot(t, b.Dir)
	cfg.SANs = cfg.SANs[:len(cfg.SANs)-1]
	generate(t, cfg)
	if diff := changed(before, snapshot(t, b.Dir)); len(diff) != 0 {
		t.Errorf("removing a SAN changed %v", diff)
	}
}

func TestGenerateRenewsExpiringLeaves(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	before := snapshot(t, b.Dir)

	later := cfg.Now().Add(300 * 24 * time.Hour)
	cfg.Now = clock(later)
	generate(t, cfg)
	after := snapshot(t, b.Dir)

	var paths []string
	for _, c := range leafCases(b) {
		paths = append(paths, c.cert) // renewed with the same key
		cert := readCert(t, c.cert)
		if !cert.NotAfter.Equal(later.Add(365 * 24 * time.Hour)) {
			t.Errorf("%s: NotAfter = %v, want a year after %v", c.cert, cert.NotAfter, later)
		}
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, c.ca))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: later, KeyUsages: c.usages}); err != nil {
			t.Errorf("%s: verify against kept CA %s: %v", c.cert, c.ca, err)
		}
	}
	if diff, want := changed(before, after), relPaths(t, b, paths...); !slices.Equal(diff, want) {
		t.Errorf("renewal changed %v, want exactly the leaves %v", diff, want)
	}
}

func TestGenerateCAKeyErrors(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	caPEM := snapshot(t, b.Dir)["server-ca.crt"]

	other, err := os.ReadFile(b.ClientCAKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.ServerCAKey, other, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Generate(cfg)
	if want := "pki: " + b.ServerCAKey + " does not match " + b.ServerCA; err == nil || err.Error() != want {
		t.Errorf("mismatched key: err = %v, want %q", err, want)
	}

	if err := os.Remove(b.ServerCAKey); err != nil {
		t.Fatal(err)
	}
	_, err = Generate(cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "pki: read "+b.ServerCAKey+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: err = %v, want pki: read %s: ... not exist", err, b.ServerCAKey)
	}

	if err := os.WriteFile(b.ServerCAKey, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Generate(cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "pki: parse "+b.ServerCAKey+": ") {
		t.Errorf("garbage key: err = %v, want pki: parse %s: ...", err, b.ServerCAKey)
	}
	if got := snapshot(t, b.Dir)["server-ca.crt"]; got != caPEM {
		t.Error("CA certificate was replaced")
	}
}

func TestGenerateReissuesBrokenLeaves(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	before := snapshot(t, b.Dir)

	// A missing key, a corrupt certificate, and a valid pair from the wrong
	// CA (and with the wrong subject).
	if err := os.Remove(b.AdminKey); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.SchedulerCert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{b.ProxyClientCert: b.KubeProxyCert, b.ProxyClientKey: b.KubeProxyKey} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	generate(t, cfg)

	want := relPaths(t, b, b.AdminCert, b.AdminKey, b.SchedulerCert, b.SchedulerKey, b.KubeProxyCert, b.KubeProxyKey)
	if diff := changed(before, snapshot(t, b.Dir)); !slices.Equal(diff, want) {
		t.Errorf("changed %v, want %v", diff, want)
	}
	for _, c := range leafCases(b) {
		if cert := readCert(t, c.cert); cert.Subject.CommonName != c.cn {
			t.Errorf("%s: CN = %q, want %q", c.cert, cert.Subject.CommonName, c.cn)
		}
	}
}

func TestGenerateLoneCAKey(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	before := snapshot(t, b.Dir)
	// A crash between writing a CA's key and its certificate.
	if err := os.Remove(b.ServerCA); err != nil {
		t.Fatal(err)
	}
	cfg.Now = clock(cfg.Now().Add(time.Minute))
	generate(t, cfg)
	want := relPaths(t, b, b.ServerCA, b.ServerCASigning, b.APIServerCert, b.MetricsServerCert, b.ControllerManagerServingCert, b.SchedulerServingCert)
	if diff := changed(before, snapshot(t, b.Dir)); !slices.Equal(diff, want) {
		t.Errorf("changed %v, want %v", diff, want)
	}
	key, err := readKey(b.ServerCAKey)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyMatches(readCert(t, b.ServerCA), key) {
		t.Error("new CA certificate does not use the existing key")
	}
}

func TestGenerateServiceAccountKey(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	key, err := readKey(b.ServiceAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok || rsaKey.N.BitLen() != 2048 {
		t.Fatalf("service-account key is %T, want RSA 2048", key)
	}
	data, err := os.ReadFile(b.ServiceAccountPub)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := parsePublicKey(data)
	if err != nil || !publicKeysEqual(pub, key.Public()) {
		t.Fatalf("%s does not hold the public key of %s (%v)", b.ServiceAccountPub, b.ServiceAccountKey, err)
	}

	// A lost public key is written again from the kept private key.
	before := snapshot(t, b.Dir)
	if err := os.Remove(b.ServiceAccountPub); err != nil {
		t.Fatal(err)
	}
	generate(t, cfg)
	if diff := changed(before, snapshot(t, b.Dir)); len(diff) != 0 {
		t.Errorf("changed %v", diff)
	}
}

func TestGenerateConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no dir":        {func(c *Config) { c.Dir = "" }, "pki: Config.Dir is required"},
		"no service IP": {func(c *Config) { c.ServiceIP = nil }, "pki: Config.ServiceIP is required"},
		"bad SAN":       {func(c *Config) { c.SANs = []string{"not a name"} }, `pki: SAN: "not a name" is neither an IP address nor a DNS name`},
		"bad node name": {func(c *Config) { c.NodeName = "node/1" }, `pki: node name: "node/1" is neither an IP address nor a DNS name`},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.mutate(&cfg)
			if _, err := Generate(cfg); err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if cfg.Dir != "" {
				if _, err := os.Stat(cfg.Dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("invalid config created %s", cfg.Dir)
				}
			}
		})
	}
}

// countFunc counts the elements of s for which f is true.
func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}

// TestGenerateMetricsServerSAN: the aggregator dials metrics-server at a
// server's address and verifies the Service's DNS name.
func TestGenerateMetricsServerSAN(t *testing.T) {
	b := generate(t, testConfig(t))
	cert := readCert(t, b.MetricsServerCert)
	if !slices.Equal(cert.DNSNames, []string{MetricsServerDNSName}) || len(cert.IPAddresses) != 0 {
		t.Fatalf("SANs = %v %v, want only %s", cert.DNSNames, cert.IPAddresses, MetricsServerDNSName)
	}
	if err := cert.VerifyHostname(MetricsServerDNSName); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateLocalServingSANs: the controller-manager and the scheduler
// serve on 127.0.0.1; their certificates verify for localhost and the
// loopback addresses against the server CA, and for nothing else.
func TestGenerateLocalServingSANs(t *testing.T) {
	b := generate(t, testConfig(t))
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, b.ServerCA))
	for _, path := range []string{b.ControllerManagerServingCert, b.SchedulerServingCert} {
		cert := readCert(t, path)
		for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
				t.Errorf("%s for %s: %v", filepath.Base(path), name, err)
			}
		}
		if err := cert.VerifyHostname("kubernetes.default.svc"); err == nil {
			t.Errorf("%s verifies for the apiserver's name", filepath.Base(path))
		}
		if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: key %T, want ECDSA (no RSA generation on the start path)", filepath.Base(path), cert.PublicKey)
		}
	}
}
