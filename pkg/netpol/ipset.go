package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

// Prefixes of the sets kube-router's policy controller owns (its
// kubeSourceIPSetPrefix and kubeDestinationIPSetPrefix).
const (
	sourceSetPrefix      = "KUBE-SRC-"
	destinationSetPrefix = "KUBE-DST-"
	// tmpSetPrefix names the scratch set a Restore fills before it swaps
	// it with the real one, so that a set is never seen half-filled.
	tmpSetPrefix = "TMP-KEDGE-"
)

// ipsets is kube-router's utils.IPSetHandler over netlink (the kernel's
// ip_set API, github.com/vishvananda/netlink) instead of the ipset
// program, which kube-router executes and kedge does not ship.
//
// kube-router's own handler lists the system's sets in Save and lets the
// controller destroy the stale ones with utils.Set.Destroy, which runs the
// ipset program. This handler does that garbage collection in Save itself:
// the controller calls Save once per full sync, after it has restored the
// sets and the iptables rules of that sync, and a set of the controller's
// (KUBE-SRC-…, KUBE-DST-…) that was not refreshed since the previous Save is
// no longer referenced. Sets returns only live sets, so the controller never
// calls Set.Destroy. Sets of other owners are never touched.
type ipsets struct {
	v6        bool
	sets      map[string]*utils.Set
	refreshed map[string]bool
	log       *slog.Logger
}

var _ utils.IPSetHandler = (*ipsets)(nil)

// newIPSets returns the handler of one IP family; it checks that the
// kernel answers the ip_set protocol.
func newIPSets(v6 bool, log *slog.Logger) (*ipsets, error) {
	if _, _, err := netlink.IpsetProtocol(); err != nil {
		return nil, fmt.Errorf("the kernel's ip_set netlink interface does not answer (CONFIG_IP_SET with hash:ip and hash:net is needed): %w", err)
	}
	return &ipsets{v6: v6, sets: map[string]*utils.Set{}, refreshed: map[string]bool{}, log: log}, nil
}

// Name implements utils.IPSetHandler: IPv6 sets carry kube-router's
// "inet6:" prefix.
func (s *ipsets) Name(set string) string {
	if s.v6 && !strings.HasPrefix(set, utils.IPv6SetPrefix+":") {
		return utils.IPv6SetPrefix + ":" + set
	}
	return set
}

// familyOptions adds the family option of an IPv6 handler.
func (s *ipsets) familyOptions(options []string) []string {
	if s.v6 && !containsOption(options, utils.OptionFamilly) {
		options = append(options, utils.OptionFamilly, utils.FamillyInet6)
	}
	return options
}

// Create implements utils.IPSetHandler: it records the set and creates it
// on the system unless it exists.
func (s *ipsets) Create(setName string, createOptions ...string) (*utils.Set, error) {
	name := s.Name(setName)
	set := s.sets[name]
	if set == nil {
		set = &utils.Set{Name: name, Options: s.familyOptions(createOptions)}
		s.sets[name] = set
	}
	if err := ensureSet(name, set.Options); err != nil {
		return nil, err
	}
	s.refreshed[name] = true
	return set, nil
}

// Add implements utils.IPSetHandler: it creates set and adds its entries.
func (s *ipsets) Add(set *utils.Set) error {
	created, err := s.Create(set.Name, set.Options...)
	if err != nil {
		return err
	}
	created.Entries = append(created.Entries, set.Entries...)
	return addEntries(created.Name, created.Options, set.Entries)
}

// RefreshSet implements utils.IPSetHandler: it sets the entries the next
// Restore writes.
func (s *ipsets) RefreshSet(setName string, entriesWithOptions [][]string, setType string) {
	name := s.Name(setName)
	set := s.sets[name]
	if set == nil {
		set = &utils.Set{Name: name, Options: s.familyOptions([]string{setType, utils.OptionTimeout, "0"})}
		s.sets[name] = set
	}
	set.Entries = make([]*utils.Entry, len(entriesWithOptions))
	for i, options := range entriesWithOptions {
		set.Entries[i] = &utils.Entry{Set: set, Options: options}
	}
	s.refreshed[name] = true
}

// Destroy implements utils.IPSetHandler.
func (s *ipsets) Destroy(setName string) error {
	name := s.Name(setName)
	if s.sets[name] == nil {
		return nil
	}
	if err := netlink.IpsetDestroy(name); err != nil && !isNotFound(err) {
		return fmt.Errorf("destroy ipset %s: %w", name, err)
	}
	delete(s.sets, name)
	delete(s.refreshed, name)
	return nil
}

// DestroyAllWithin implements utils.IPSetHandler.
func (s *ipsets) DestroyAllWithin() error {
	for name := range s.sets {
		if err := s.Destroy(name); err != nil {
			return err
		}
	}
	return nil
}

// Save implements utils.IPSetHandler: it destroys the controller's sets
// that were not refreshed since the last Save (see the type's comment) and
// keeps the others.
func (s *ipsets) Save() error {
	all, err := netlink.IpsetListAll()
	if err != nil {
		return fmt.Errorf("list ipsets: %w", err)
	}
	live := map[string]*utils.Set{}
	for _, r := range all {
		if !s.owns(r) {
			continue
		}
		if set := s.sets[r.SetName]; set != nil && s.refreshed[r.SetName] {
			live[r.SetName] = set
			continue
		}
		if err := netlink.IpsetDestroy(r.SetName); err != nil && !isNotFound(err) {
			// Still referenced (a rule of an aborted sync): the next
			// Save tries again.
			s.log.Warn("stale ipset not destroyed yet", "set", r.SetName, "err", err)
		}
	}
	s.sets, s.refreshed = live, map[string]bool{}
	return nil
}

// owns reports whether r is a set of the controller's, of this family.
func (s *ipsets) owns(r netlink.IPSetResult) bool {
	if !strings.HasPrefix(r.SetName, s.Name(sourceSetPrefix)) && !strings.HasPrefix(r.SetName, s.Name(destinationSetPrefix)) {
		return false
	}
	return (r.Family == unix.AF_INET6) == s.v6
}

// Restore implements utils.IPSetHandler: every recorded set gets exactly
// its entries, filled into a scratch set and swapped in.
func (s *ipsets) Restore() error {
	names := make([]string, 0, len(s.sets))
	for name := range s.sets {
		names = append(names, name)
	}
	sort.Strings(names)
	tmps := map[string]bool{}
	defer func() {
		for tmp := range tmps {
			_ = netlink.IpsetDestroy(tmp)
		}
	}()
	for _, name := range names {
		set := s.sets[name]
		tmp := tmpSetName(set.Options)
		if !tmps[tmp] {
			_ = netlink.IpsetDestroy(tmp) // left by a crash
			tmps[tmp] = true
		}
		if err := ensureSet(tmp, set.Options); err != nil {
			return err
		}
		if err := netlink.IpsetFlush(tmp); err != nil {
			return fmt.Errorf("flush ipset %s: %w", tmp, err)
		}
		if err := addEntries(tmp, set.Options, set.Entries); err != nil {
			return fmt.Errorf("ipset %s: %w", name, err)
		}
		if err := ensureSet(name, set.Options); err != nil {
			return err
		}
		if err := netlink.IpsetSwap(tmp, name); err != nil {
			return fmt.Errorf("swap ipsets %s and %s: %w", tmp, name, err)
		}
	}
	return nil
}

// Flush implements utils.IPSetHandler: it empties the recorded sets.
func (s *ipsets) Flush() error {
	for name := range s.sets {
		if err := netlink.IpsetFlush(name); err != nil && !isNotFound(err) {
			return fmt.Errorf("flush ipset %s: %w", name, err)
		}
	}
	return nil
}

// Get implements utils.IPSetHandler.
func (s *ipsets) Get(setName string) *utils.Set { return s.sets[setName] }

// Sets implements utils.IPSetHandler.
func (s *ipsets) Sets() map[string]*utils.Set { return s.sets }

// createSpec is a set's type and create options, parsed from kube-router's
// ipset command line words ("hash:ip timeout 0 family inet6").
type createSpec struct {
	typ     string
	options netlink.IpsetCreateOptions
}

// parseCreate parses ipset create options; kube-router passes the type,
// then name/value pairs.
func parseCreate(options []string) (createSpec, error) {
	if len(options) == 0 {
		return createSpec{}, errors.New("ipset options without a set type")
	}
	spec := createSpec{typ: options[0], options: netlink.IpsetCreateOptions{Family: unix.AF_INET}}
	if spec.typ != utils.TypeHashIP && spec.typ != utils.TypeHashNet {
		return createSpec{}, fmt.Errorf("ipset type %s: only %s and %s are handled", spec.typ, utils.TypeHashIP, utils.TypeHashNet)
	}
	for i := 1; i < len(options); i += 2 {
		if i+1 >= len(options) {
			return createSpec{}, fmt.Errorf("ipset option %s without a value", options[i])
		}
		key, value := options[i], options[i+1]
		switch key {
		case utils.OptionTimeout, utils.OptionMaxElem:
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				return createSpec{}, fmt.Errorf("ipset option %s %q: %w", key, value, err)
			}
			v := uint32(n)
			if key == utils.OptionTimeout {
				spec.options.Timeout = &v
			} else {
				spec.options.MaxElements = v
			}
		case utils.OptionFamilly:
			switch value {
			case utils.FamillyInet:
				spec.options.Family = unix.AF_INET
			case utils.FamillyInet6:
				spec.options.Family = unix.AF_INET6
			default:
				return createSpec{}, fmt.Errorf("ipset family %q", value)
			}
		case utils.OptionHashSize:
			// the kernel grows the hash by itself
		default:
			return createSpec{}, fmt.Errorf("ipset create option %q is not handled", key)
		}
	}
	return spec, nil
}

// ensureSet creates set name with options unless it exists.
func ensureSet(name string, options []string) error {
	spec, err := parseCreate(options)
	if err != nil {
		return fmt.Errorf("ipset %s: %w", name, err)
	}
	err = netlink.IpsetCreate(name, spec.typ, spec.options)
	if err != nil && !errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create ipset %s (%s): %w", name, spec.typ, err)
	}
	return nil
}

// addEntries adds entries to set name of the given options.
func addEntries(name string, options []string, entries []*utils.Entry) error {
	spec, err := parseCreate(options)
	if err != nil {
		return err
	}
	words := make([][]string, len(entries))
	for i, e := range entries {
		words[i] = e.Options
	}
	add, err := netlinkEntries(spec.typ, words)
	if err != nil {
		return err
	}
	for i := range add {
		add[i].Replace = true // kube-router adds with -exist
		if err := netlink.IpsetAdd(name, &add[i]); err != nil {
			return fmt.Errorf("add %s/%d to ipset %s: %w", add[i].IP, add[i].CIDR, name, err)
		}
	}
	return nil
}

// netlinkEntries turns kube-router's entries ("10.42.0.5 timeout 0",
// "10.0.0.0/8 timeout 0", "10.1.0.0/16 timeout 0 nomatch") into the
// entries the kernel gets. A hash:net set matches the longest prefix, and
// a nomatch entry excludes its addresses; netlink (the library) cannot set
// nomatch, so the set gets the same addresses as the minimal list of
// prefixes of (matching prefixes minus nomatch prefixes), longest wins.
func netlinkEntries(typ string, entries [][]string) ([]netlink.IPSetEntry, error) {
	type parsed struct {
		prefix  netip.Prefix
		nomatch bool
		timeout *uint32
	}
	var all []parsed
	for _, words := range entries {
		if len(words) == 0 {
			return nil, errors.New("empty ipset entry")
		}
		p := parsed{}
		prefix, err := netip.ParsePrefix(words[0])
		if err != nil {
			addr, aerr := netip.ParseAddr(words[0])
			if aerr != nil {
				return nil, fmt.Errorf("ipset entry %q: not an address or a prefix", words[0])
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		p.prefix = prefix.Masked()
		for i := 1; i < len(words); i++ {
			switch words[i] {
			case utils.OptionNoMatch:
				p.nomatch = true
			case utils.OptionTimeout:
				if i+1 >= len(words) {
					return nil, fmt.Errorf("ipset entry %v: timeout without a value", words)
				}
				n, err := strconv.ParseUint(words[i+1], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("ipset entry %v: %w", words, err)
				}
				v := uint32(n)
				p.timeout = &v
				i++
			default:
				return nil, fmt.Errorf("ipset entry option %q is not handled", words[i])
			}
		}
		all = append(all, p)
	}
	if typ == utils.TypeHashIP {
		out := make([]netlink.IPSetEntry, 0, len(all))
		for _, p := range all {
			if p.nomatch || !p.prefix.IsSingleIP() {
				return nil, fmt.Errorf("hash:ip entry %s: a single address without nomatch is expected", p.prefix)
			}
			out = append(out, netlink.IPSetEntry{IP: net.IP(p.prefix.Addr().AsSlice()), Timeout: p.timeout})
		}
		return out, nil
	}
	// hash:net: later entries of the same prefix win (add -exist), then
	// shorter prefixes first so that the longer ones override them.
	last := map[netip.Prefix]parsed{}
	for _, p := range all {
		last[p.prefix] = p
	}
	ordered := make([]parsed, 0, len(last))
	for _, p := range last {
		ordered = append(ordered, p)
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].prefix.Bits() < ordered[j].prefix.Bits() })
	var b netipx.IPSetBuilder
	var timeout *uint32
	for _, p := range ordered {
		if p.nomatch {
			b.RemovePrefix(p.prefix)
			continue
		}
		b.AddPrefix(p.prefix)
		timeout = p.timeout
	}
	set, err := b.IPSet()
	if err != nil {
		return nil, err
	}
	var out []netlink.IPSetEntry
	for _, prefix := range set.Prefixes() {
		for _, half := range splitZero(prefix) {
			out = append(out, netlink.IPSetEntry{IP: net.IP(half.Addr().AsSlice()), CIDR: uint8(half.Bits()), Timeout: timeout})
		}
	}
	return out, nil
}

// splitZero splits a /0, which hash:net cannot hold, into two halves.
func splitZero(p netip.Prefix) []netip.Prefix {
	if p.Bits() != 0 {
		return []netip.Prefix{p}
	}
	low := netip.PrefixFrom(p.Addr(), 1)
	high := netipx.PrefixLastIP(low).Next()
	return []netip.Prefix{low, netip.PrefixFrom(high, 1)}
}

// tmpSetName is the scratch set for sets of options (one per type and
// family; the kernel swaps only sets of the same type and family).
func tmpSetName(options []string) string {
	sum := sha256.Sum256([]byte(strings.Join(options, " ")))
	return tmpSetPrefix + hex.EncodeToString(sum[:])[:16]
}

// containsOption reports whether options has the name key.
func containsOption(options []string, key string) bool {
	for _, o := range options {
		if o == key {
			return true
		}
	}
	return false
}

// isNotFound reports whether err is the kernel's "set does not exist".
func isNotFound(err error) bool {
	return errors.Is(err, unix.ENOENT)
}
