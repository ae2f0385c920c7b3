// Package skew enforces Kubernetes' version-skew policy between the nodes of
// a kedge cluster, and refuses a downgrade of the datastore.
//
// The rules, from upstream's policy (kubernetes.io/releases/version-skew-policy):
//   - servers (their apiservers) are at most one minor version apart, so a
//     server two minors away from any other is refused, and a server's data
//     dir moves up one minor at a time;
//   - a kubelet is never newer than the apiservers: an agent newer than every
//     server is refused (one newer than some servers only is logged: that
//     is the middle of a rolling upgrade), and may be three minors older;
//   - the datastore never goes back: a server older than the newest minor
//     that has run on the cluster's data is refused, unless the data comes
//     from a snapshot taken before (a restore brings its own record).
//
// Versions compared are the embedded Kubernetes versions (v1.36.4); patch
// releases never matter.
package skew

import (
	"fmt"
	"maps"
	"slices"

	utilversion "k8s.io/apimachinery/pkg/util/version"
)

// Rules of upstream's skew policy, in minor versions.
const (
	// MaxServerSkew is how far apart two servers may be.
	MaxServerSkew = 1
	// MaxKubeletLag is how much older than the oldest server an agent may be.
	MaxKubeletLag = 3
)

// minor is a Kubernetes version's major.minor.
type minor struct{ major, minor uint }

func (m minor) String() string { return fmt.Sprintf("%d.%d", m.major, m.minor) }

// less reports whether m is an older minor than o.
func (m minor) less(o minor) bool {
	return m.major < o.major || m.major == o.major && m.minor < o.minor
}

// distance is how many minors apart m and o are (majors never differ in
// practice: a different major counts as far apart).
func (m minor) distance(o minor) int {
	if m.major != o.major {
		return 1 << 10
	}
	return max(int(m.minor)-int(o.minor), int(o.minor)-int(m.minor))
}

// parse reads a Kubernetes version ("v1.36.4", "1.37.0-rc.1", a kedge version
// "v1.36.4+kedge1-3-g0ea5c7a").
func parse(v string) (minor, error) {
	p, err := utilversion.ParseGeneric(v)
	if err != nil {
		return minor{}, fmt.Errorf("bad Kubernetes version %q: %w", v, err)
	}
	return minor{p.Major(), p.Minor()}, nil
}

// Valid reports whether v is a version these rules can compare: a binary
// built without module information has none ("unknown", "(devel)"), and is
// not checked.
func Valid(v string) bool {
	_, err := parse(v)
	return err == nil
}

// CheckServer checks a server at version v (named name) against the other
// servers' versions (node name → version; its own entry, if any, is
// ignored) and the newest version that ran on the datastore ("" if none
// is recorded).
func CheckServer(name, v string, servers map[string]string, datastore string) error {
	own, err := parse(v)
	if err != nil {
		return err
	}
	if datastore != "" {
		if ds, err := parse(datastore); err == nil && own.less(ds) {
			return fmt.Errorf("server %s runs Kubernetes %s, but the cluster's datastore has already been used by Kubernetes %s: a downgrade is refused (objects may be stored in versions %s cannot read); run a %s (or newer) kedge, or restore a snapshot taken before the upgrade with `kedge server --cluster-reset --cluster-reset-restore-path FILE`", name, v, datastore, own, ds)
		}
	}
	for _, other := range slices.Sorted(maps.Keys(servers)) {
		if other == name {
			continue
		}
		ov, err := parse(servers[other])
		if err != nil {
			continue // a record this binary cannot read is not a reason to refuse
		}
		if own.distance(ov) > MaxServerSkew {
			return fmt.Errorf("server %s runs Kubernetes %s and server %s runs %s: servers may be at most %d minor version apart; upgrade one minor at a time, every server before the next minor", name, v, other, servers[other], MaxServerSkew)
		}
	}
	return nil
}

// CheckAgent checks an agent (a kubelet) at version v against the servers'
// versions. It returns an error when the agent is newer than every server or
// older than the oldest by more than MaxKubeletLag, and a non-empty warning
// when it is newer than some servers only (a rolling upgrade that has not
// reached them yet).
func CheckAgent(name, v string, servers map[string]string) (warning string, err error) {
	own, err := parse(v)
	if err != nil {
		return "", err
	}
	var newest, oldest minor
	var newestName, oldestName string
	for _, s := range slices.Sorted(maps.Keys(servers)) {
		sv, err := parse(servers[s])
		if err != nil {
			continue
		}
		if newestName == "" || newest.less(sv) {
			newest, newestName = sv, s
		}
		if oldestName == "" || sv.less(oldest) {
			oldest, oldestName = sv, s
		}
	}
	if newestName == "" {
		return "", nil // no server recorded its version yet
	}
	switch {
	case newest.less(own):
		return "", fmt.Errorf("agent %s runs Kubernetes %s, newer than every server (the newest, %s, runs %s): a kubelet may not be newer than the apiservers; upgrade the servers first", name, v, newestName, servers[newestName])
	case own.less(oldest) && oldest.distance(own) > MaxKubeletLag:
		return "", fmt.Errorf("agent %s runs Kubernetes %s, more than %d minor versions older than server %s (%s): upgrade the agent", name, v, MaxKubeletLag, oldestName, servers[oldestName])
	case oldest.less(own):
		return fmt.Sprintf("agent %s runs Kubernetes %s, newer than server %s (%s): finish upgrading the servers", name, v, oldestName, servers[oldestName]), nil
	}
	return "", nil
}

// CheckDataDir checks a server's binary at version v against the version
// that last ran on its data dir (prev, "" on a first start): the data dir
// never goes back a minor, and never skips one.
func CheckDataDir(dir, prev, v string) error {
	if prev == "" {
		return nil
	}
	p, err := parse(prev)
	if err != nil {
		return nil // an unreadable record is rewritten after this start
	}
	own, err := parse(v)
	if err != nil {
		return err
	}
	switch {
	case own.less(p):
		return fmt.Errorf("%s was last used by Kubernetes %s and this kedge runs %s: a downgrade of the datastore is refused; run a %s (or newer) kedge, or restore a snapshot taken before the upgrade with `kedge server --cluster-reset --cluster-reset-restore-path FILE`", dir, prev, v, p)
	case own.distance(p) > MaxServerSkew:
		return fmt.Errorf("%s was last used by Kubernetes %s and this kedge runs %s: upgrade one minor version at a time (first a %d.%d kedge)", dir, prev, v, p.major, p.minor+1)
	}
	return nil
}

// Newer is the newer of two versions' minors, as a version string: a or b
// (a if they share a minor, or if b cannot be read).
func Newer(a, b string) string {
	am, errA := parse(a)
	bm, errB := parse(b)
	if errA != nil {
		return b
	}
	if errB == nil && am.less(bm) {
		return b
	}
	return a
}
