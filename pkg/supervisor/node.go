package supervisor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/pki"
)

// NodePath is where an agent asks for its certificates and the cluster's
// settings (POST, basic auth "node" with the token's secret). A node that
// joined renews its certificates there with its kubelet client certificate
// (CN=system:node:<name>) instead of the token, so that a changed token
// does not stop renewals.
const NodePath = "/v1-kedge/node"

// NodeRequest is what a joining agent sends.
type NodeRequest struct {
	Name     string   `json:"name"`
	Password string   `json:"password"` // the node's own secret, kept in <data-dir>/agent/node-password
	IPs      []string `json:"ips"`
	// PublicKeys, by certificate file name (kubelet-serving.crt, …), are
	// PEM public keys to issue those certificates for: a renewing node
	// keeps its private keys, and the answer has no key file for them.
	PublicKeys map[string]string `json:"publicKeys,omitempty"`
	// Version is the agent's Kubernetes version (v1.36.4), checked against
	// the servers' by the skew policy; older agents send none.
	Version string `json:"version,omitempty"`
}

// NodeResponse is what the agent gets back: PEM certificates and keys, and
// the settings every node of the cluster must share.
type NodeResponse struct {
	Files          map[string][]byte `json:"files"` // file name → content, as pki.NodeBundle names them
	ClusterCIDR    string            `json:"clusterCIDR"`
	ServiceCIDR    string            `json:"serviceCIDR,omitempty"` // --service-cidr (NetworkPolicy enforcement)
	ClusterDNS     string            `json:"clusterDNS"`
	ClusterDomain  string            `json:"clusterDomain"`
	FlannelBackend string            `json:"flannelBackend"`
	Disabled       []string          `json:"disabled,omitempty"` // --disable: add-ons nodes do not run
	Servers        []string          `json:"servers"`            // apiserver URLs
}

// Cluster holds the settings handed to agents.
type Cluster struct {
	ClusterCIDR, ClusterDNS, ClusterDomain, FlannelBackend string
	Disabled                                               []string // --disable
	Servers                                                []string
}

// nodeHandler issues node certificates to an agent that knows the secret
// and, for a node name seen before, the same node password.
func (s *Supervisor) nodeHandler(w http.ResponseWriter, r *http.Request) {
	// A node that joined before shows its kubelet client certificate: it
	// needs no token, so a rotated or expired token does not lock it out.
	// (A certificate of another name — the node was renamed — does not
	// count: the token must then be valid.)
	certNode := s.nodeFromCert(r)
	if certNode == "" {
		if e := s.authorize(r, "node", "the token's secret is wrong"); e != nil {
			writeAuthError(w, e)
			return
		}
	}
	var req NodeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if certNode != "" && certNode != req.Name {
		if e := s.authorize(r, "node", "the token's secret is wrong"); e != nil {
			writeAuthError(w, e)
			return
		}
	}
	if err := checkNodeRequest(req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var ips []net.IP
	for _, s := range req.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			http.Error(w, fmt.Sprintf("bad node IP %q", s), http.StatusBadRequest)
			return
		}
		ips = append(ips, ip)
	}
	if !s.checkAgent(w, r, req.Name, req.Password) {
		return
	}
	if !s.checkAgentVersion(w, r, req) {
		return
	}
	dir, err := os.MkdirTemp("", "kedge-node-")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.RemoveAll(dir)
	pubs, err := nodePublicKeys(req.PublicKeys)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := pki.IssueNode(s.cfg.CA, pki.NodeConfig{Dir: dir, NodeName: req.Name, NodeIPs: ips, Validity: s.cfg.CertValidity, PublicKeys: pubs}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	servers := s.cfg.Cluster.Servers
	if all := s.apiservers(r.Context()); len(all) > 0 {
		servers = all
	}
	resp := NodeResponse{
		Files:          map[string][]byte{},
		ClusterCIDR:    s.cfg.Cluster.ClusterCIDR,
		ServiceCIDR:    s.cfg.Settings.ServiceCIDR,
		ClusterDNS:     s.cfg.Cluster.ClusterDNS,
		ClusterDomain:  s.cfg.Cluster.ClusterDomain,
		FlannelBackend: s.cfg.Cluster.FlannelBackend,
		Disabled:       s.cfg.Cluster.Disabled,
		Servers:        servers,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp.Files[e.Name()] = data
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// Bounds of a node password: bcrypt reads at most 72 bytes.
const (
	minNodePassword = 16
	maxNodePassword = 72
)

// maxNodeName is the longest node name whose password Secret
// (passwordSecret) is still a valid object name.
var maxNodeName = validation.DNS1123SubdomainMaxLength - len(passwordSecret(""))

// checkNodeRequest reports what is wrong with an agent's name or password.
// The errors are the agent's to fix (--node-name), never worth a retry.
func checkNodeRequest(req NodeRequest) error {
	if errs := validation.IsDNS1123Subdomain(req.Name); len(errs) > 0 {
		return fmt.Errorf("bad node name %q (--node-name): %s", req.Name, strings.Join(errs, "; "))
	}
	if len(req.Name) > maxNodeName {
		return fmt.Errorf("bad node name %q (--node-name): %d characters, at most %d (its password is kept in the Secret kube-system/%s)", req.Name, len(req.Name), maxNodeName, passwordSecret("<name>"))
	}
	if n := len(req.Password); n < minNodePassword || n > maxNodePassword {
		return fmt.Errorf("bad node password: %d bytes, want %d to %d", n, minNodePassword, maxNodePassword)
	}
	return nil
}

// apiservers lists every apiserver of the cluster as https URLs, from the
// kubernetes Endpoints (each apiserver registers itself there), so that an
// agent's load balancer knows them all from its first start.
func (s *Supervisor) apiservers(ctx context.Context) []string {
	client, err := s.client()
	if err != nil {
		return nil
	}
	ep, err := client.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, subset := range ep.Subsets {
		for _, port := range subset.Ports {
			if port.Name != "https" {
				continue
			}
			for _, addr := range subset.Addresses {
				out = append(out, "https://"+net.JoinHostPort(addr.IP, strconv.Itoa(int(port.Port))))
			}
		}
	}
	return out
}

// passwordError is a refused node password.
type passwordError struct{ node string }

func (e *passwordError) Error() string {
	return fmt.Sprintf("node %q already joined from another machine (its node password differs): give this machine another --node-name, or delete the Node and the Secret kube-system/%s first", e.node, passwordSecret(e.node))
}

func passwordSecret(node string) string { return node + ".node-password.kedge" }

// checkNodePassword records the bcrypt hash of a node's password the first
// time the name joins, and compares it afterwards.
func (s *Supervisor) checkNodePassword(ctx context.Context, node, password string) error {
	client, err := s.client()
	if err != nil {
		return err
	}
	secrets := client.CoreV1().Secrets(metav1.NamespaceSystem)
	name := passwordSecret(node)
	existing, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if bcrypt.CompareHashAndPassword(existing.Data["hash"], []byte(password)) != nil {
			return &passwordError{node: node}
		}
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("node password of %s: %w", node, err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		Type:       "kedge.io/node-password",
		Data:       map[string][]byte{"hash": hash},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return s.checkNodePassword(ctx, node, password) // lost a race with another join of the same name
	}
	return err
}

// client returns the admin client, created on first use (the apiserver is
// not up yet when the supervisor is built).
func (s *Supervisor) client() (kubernetes.Interface, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kube != nil {
		return s.kube, nil
	}
	if s.cfg.NewClient == nil {
		return nil, errors.New("supervisor: no API client")
	}
	c, err := s.cfg.NewClient()
	if err != nil {
		return nil, err
	}
	s.kube = c
	return c, nil
}

// nodeFromCert returns the node name of the kubelet client certificate r
// was sent with (CN system:node:<name>, O system:nodes, signed by the
// cluster's client CA and valid now), or "".
func (s *Supervisor) nodeFromCert(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || s.cfg.CA.ClientCA == "" {
		return ""
	}
	caPEM, err := os.ReadFile(s.cfg.CA.ClientCA)
	if err != nil {
		return ""
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return ""
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return ""
	}
	name, ok := strings.CutPrefix(leaf.Subject.CommonName, NodeUserPrefix)
	if !ok || name == "" || !slices.Contains(leaf.Subject.Organization, NodesGroup) {
		return ""
	}
	return name
}
