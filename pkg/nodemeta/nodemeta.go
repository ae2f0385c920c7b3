// Package nodemeta keeps a Node's labels and taints in line with its
// node's --node-label and --node-taint flags: set at registration (the
// kubelet registers the Node with them) and kept in sync afterwards, so that
// a flag changed in config.yaml and a restart change the Node. Only what
// kedge applied is ever removed: labels and taints set with kubectl stay.
//
// What kedge applied is recorded beside the Node (Applied): servers keep it
// in the Node's AppliedAnnotation, written with admin credentials; for an
// agent the supervisor keeps it in the agent's node-password Secret, which
// the node cannot read or write, because a node may not change its own
// taints (NodeRestriction) and must not be able to make kedge remove a
// taint an administrator set by claiming it as its own.
//
//	want, _ := nodemeta.Parse([]string{"site=north"}, []string{"dedicated=edge:NoSchedule"})
//	applied, changed := nodemeta.Reconcile(node, want, previous)
package nodemeta

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubeletapis "k8s.io/kubelet/pkg/apis"
	"k8s.io/kubernetes/pkg/util/taints"
)

// AppliedAnnotation holds, on a server's Node, the JSON Applied record of
// the labels and taints kedge set from the flags.
const AppliedAnnotation = "kedge.io/node-config"

// ControlPlaneLabel marks a server's Node (kubectl's ROLES column).
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// ExternalIPAnnotation lists a Node's --node-external-ip addresses,
// comma-separated; kedge's cloud controller (pkg/cloudcontroller) makes
// them the Node's ExternalIP addresses.
const ExternalIPAnnotation = "kedge.io/external-ip"

// Spec is what a node's flags ask for.
type Spec struct {
	Labels map[string]string
	Taints []corev1.Taint
	// ExternalIPs are --node-external-ip; the node's kubelet then runs with
	// --cloud-provider=external, see pkg/cloudcontroller.
	ExternalIPs []net.IP
}

// Applied records what kedge set on a Node: label keys and taints as
// "key:Effect" (a taint is one per key and effect).
type Applied struct {
	Labels []string `json:"labels,omitempty"`
	Taints []string `json:"taints,omitempty"`
}

// ParseExternalIPs reads --node-external-ip values: at most one address of
// each IP family, none loopback or unspecified.
func ParseExternalIPs(values []string) ([]net.IP, error) {
	var ips []net.IP
	for _, v := range values {
		ip := net.ParseIP(strings.TrimSpace(v))
		if ip == nil {
			return nil, fmt.Errorf("--node-external-ip %q: not an IP address", v)
		}
		if ip.IsLoopback() || ip.IsUnspecified() {
			return nil, fmt.Errorf("--node-external-ip %s: want an address others reach this node at, not loopback or unspecified", ip)
		}
		if slices.ContainsFunc(ips, func(o net.IP) bool { return (o.To4() == nil) == (ip.To4() == nil) }) {
			return nil, fmt.Errorf("--node-external-ip %s: at most one IPv4 and one IPv6 address", ip)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

// Parse reads --node-label key=value and --node-taint key[=value]:Effect
// values; every error names the flag and the value.
func Parse(labels, taintFlags []string) (Spec, error) {
	s := Spec{Labels: map[string]string{}}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return s, fmt.Errorf("--node-label %q: want key=value", l)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return s, fmt.Errorf("--node-label %q: key: %s", l, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return s, fmt.Errorf("--node-label %q: value: %s", l, strings.Join(errs, "; "))
		}
		if old, dup := s.Labels[k]; dup && old != v {
			return s, fmt.Errorf("--node-label %q: key %s given twice with different values", l, k)
		}
		s.Labels[k] = v
	}
	for _, t := range taintFlags {
		if strings.HasSuffix(t, "-") {
			return s, fmt.Errorf("--node-taint %q: want key[=value]:Effect; to remove a taint, drop the flag (kedge removes the taints it set) or use kubectl taint", t)
		}
		add, _, err := taints.ParseTaints([]string{t})
		if err != nil {
			return s, fmt.Errorf("--node-taint %q: %w (want key[=value]:NoSchedule|PreferNoSchedule|NoExecute)", t, err)
		}
		for _, a := range add {
			if i := slices.IndexFunc(s.Taints, func(o corev1.Taint) bool { return taintID(o) == taintID(a) }); i >= 0 {
				return s, fmt.Errorf("--node-taint %q: %s given twice", t, taintID(a))
			}
			s.Taints = append(s.Taints, a)
		}
	}
	return s, nil
}

// LabelFlags renders s's labels back as flag values, sorted.
func (s Spec) LabelFlags() []string {
	out := make([]string, 0, len(s.Labels))
	for k, v := range s.Labels {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TaintFlags renders s's taints back as flag values (the agent sends them to
// the supervisor, which parses them with Parse).
func (s Spec) TaintFlags() []string {
	out := make([]string, 0, len(s.Taints))
	for _, t := range s.Taints {
		out = append(out, t.ToString())
	}
	return out
}

// Restricted returns the labels of s in the kubernetes.io and k8s.io
// namespaces that a kubelet may not set on its own Node (NodeRestriction);
// only another client may set them.
func (s Spec) Restricted() []string {
	_, restricted := SplitLabels(s.Labels)
	out := slices.Collect(maps.Keys(restricted))
	sort.Strings(out)
	return out
}

// CheckAgentLabels refuses the labels an agent may not ask for: of the
// restricted ones (see Restricted), only node roles other than the control
// plane's are allowed (node-role.kubernetes.io/worker=true): the
// node-restriction.kubernetes.io/ prefix and the other kubernetes.io labels
// exist so that only administrators set them.
func CheckAgentLabels(s Spec) error {
	for _, k := range s.Restricted() {
		role, isRole := strings.CutPrefix(k, "node-role.kubernetes.io/")
		if !isRole || role == "control-plane" || role == "master" {
			return fmt.Errorf("--node-label %s: an agent may not set this label on its own Node (labels under kubernetes.io and k8s.io are the administrator's, see NodeRestriction); set it from a server with: kedge kubectl label node <name> %s=…", k, k)
		}
	}
	return nil
}

// Reconcile changes node's labels and taints to what want asks for, given
// what kedge applied before: a label or taint kedge applied that want no
// longer has is removed; labels and taints from anyone else stay. It
// returns the new record and whether node changed; scope says which of the
// two it manages (the other is left as it is, and its record too). The
// ExternalIPAnnotation goes with the labels.
func Reconcile(node *corev1.Node, want Spec, before Applied, scope Scope) (Applied, bool) {
	after := before
	changed := false
	if scope.Labels {
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for _, k := range before.Labels {
			if _, keep := want.Labels[k]; !keep {
				if _, ok := node.Labels[k]; ok {
					delete(node.Labels, k)
					changed = true
				}
			}
		}
		after.Labels = nil
		for k, v := range want.Labels {
			if old, ok := node.Labels[k]; !ok || old != v {
				node.Labels[k] = v
				changed = true
			}
			after.Labels = append(after.Labels, k)
		}
		sort.Strings(after.Labels)
		// The annotation is kedge's alone: set from the flag, or absent.
		ips := make([]string, 0, len(want.ExternalIPs))
		for _, ip := range want.ExternalIPs {
			ips = append(ips, ip.String())
		}
		old, had := node.Annotations[ExternalIPAnnotation]
		switch v := strings.Join(ips, ","); {
		case v == "" && had:
			delete(node.Annotations, ExternalIPAnnotation)
			changed = true
		case v != "" && old != v:
			if node.Annotations == nil {
				node.Annotations = map[string]string{}
			}
			node.Annotations[ExternalIPAnnotation] = v
			changed = true
		}
	}
	if scope.Taints {
		wanted := map[string]bool{}
		for _, t := range want.Taints {
			wanted[taintID(t)] = true
		}
		var kept []corev1.Taint
		for _, t := range node.Spec.Taints {
			if slices.Contains(before.Taints, taintID(t)) && !wanted[taintID(t)] {
				changed = true
				continue
			}
			kept = append(kept, t)
		}
		node.Spec.Taints = kept
		after.Taints = nil
		for _, t := range want.Taints {
			i := slices.IndexFunc(node.Spec.Taints, func(o corev1.Taint) bool { return taintID(o) == taintID(t) })
			switch {
			case i < 0:
				node.Spec.Taints = append(node.Spec.Taints, t)
				changed = true
			case node.Spec.Taints[i].Value != t.Value:
				node.Spec.Taints[i].Value = t.Value
				changed = true
			}
			after.Taints = append(after.Taints, taintID(t))
		}
		sort.Strings(after.Taints)
	}
	return after, changed
}

// Scope says which of labels and taints Reconcile manages.
type Scope struct{ Labels, Taints bool }

// Decode reads a record (AppliedAnnotation's value); empty or malformed is
// an empty record: nothing is removed that kedge cannot prove it set.
func Decode(s string) Applied {
	var a Applied
	if s != "" {
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			return Applied{}
		}
	}
	return a
}

// Encode is the inverse of Decode.
func (a Applied) Encode() string {
	raw, _ := json.Marshal(a)
	return string(raw)
}

// taintID is a taint's identity on a Node: its key and effect.
func taintID(t corev1.Taint) string { return t.Key + ":" + string(t.Effect) }

// isKubernetesLabel says whether key is in the kubernetes.io or k8s.io
// namespace (the domain or a subdomain).
func isKubernetesLabel(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	for _, d := range []string{"kubernetes.io", "k8s.io"} {
		if prefix == d || strings.HasSuffix(prefix, "."+d) {
			return true
		}
	}
	return false
}

// SplitLabels separates the labels the kubelet may set on its own Node
// from those only another client may set. The kubelet refuses, and the
// NodeRestriction admission plugin rejects, labels in the kubernetes.io and
// k8s.io namespaces other than the kubelet's own (kubernetes.io/hostname,
// topology.kubernetes.io/*, node.kubernetes.io/*, kubelet.kubernetes.io/*
// …): node-role.kubernetes.io/control-plane is one of them.
func SplitLabels(labels map[string]string) (self, restricted map[string]string) {
	self = map[string]string{}
	for k, v := range labels {
		if isKubernetesLabel(k) && !kubeletapis.IsKubeletLabel(k) {
			if restricted == nil {
				restricted = map[string]string{}
			}
			restricted[k] = v
			continue
		}
		self[k] = v
	}
	return self, restricted
}
