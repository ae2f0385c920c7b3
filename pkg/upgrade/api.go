// Package upgrade carries out automated rolling upgrades of a kedge
// cluster, the system-upgrade-controller / k0s autopilot idea built in and
// image-free. A user creates an Upgrade (kedge.io/v1alpha1, cluster-scoped):
//
//	apiVersion: kedge.io/v1alpha1
//	kind: Upgrade
//	metadata: {name: to-v1.37.2}
//	spec:
//	  version: v1.37.2+kedge1       # `kedge --version`'s first word
//	  url: https://example.com/kedge/v1.37.2+kedge1   # or path: /srv/kedge (on every node)
//	  concurrency: 1                 # agents at a time; servers always one by one
//	  drain: true
//
// The Controller (servers, leader-elected) walks the nodes in the safe
// order — servers first, one at a time, then agents — and for each: cordons
// it, drains it (evictions honour PodDisruptionBudgets), and hands it the
// plan in an annotation of its Node. The node's Upgrader (every node)
// fetches kedge-<arch> and sha256sum-<arch>.txt from the source, verifies
// the checksum and the binary's version, installs it over its own
// executable and restarts: through the service manager when it runs under
// one (systemd, OpenRC), by re-executing itself when run bare. The
// controller waits for the Node to be Ready with the new version, uncordons
// it and goes on; it stops at the first failure and says why in the
// Upgrade's status.
package upgrade

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The Upgrade resource.
var Resource = schema.GroupVersionResource{Group: "kedge.io", Version: "v1alpha1", Resource: "upgrades"}

// Annotations on Nodes, the protocol between the controller and each node.
const (
	// VersionAnnotation is the kedge version a node runs, set by its Upgrader.
	VersionAnnotation = "kedge.io/version"
	// PlanAnnotation is the Plan the controller hands a node (JSON).
	PlanAnnotation = "kedge.io/upgrade-plan"
	// ErrorAnnotation is set by a node whose upgrade failed: "<version>: <why>".
	ErrorAnnotation = "kedge.io/upgrade-error"
	// CordonedAnnotation marks a node the controller cordoned (and so uncordons).
	CordonedAnnotation = "kedge.io/upgrade-cordoned"
)

// Phases of an Upgrade and of each of its nodes.
const (
	Pending   = "Pending"
	Running   = "Running"
	Succeeded = "Succeeded"
	Failed    = "Failed"
)

// Spec is an Upgrade's spec.
type Spec struct {
	Version     string `json:"version"`
	URL         string `json:"url,omitempty"`
	Path        string `json:"path,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
	Drain       *bool  `json:"drain,omitempty"`
}

// NodeStatus is one node's progress.
type NodeStatus struct {
	Name    string `json:"name"`
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
}

// Status is an Upgrade's status.
type Status struct {
	Phase   string       `json:"phase,omitempty"`
	Message string       `json:"message,omitempty"`
	Nodes   []NodeStatus `json:"nodes,omitempty"`
}

// Upgrade is the typed view of an Upgrade object.
type Upgrade struct {
	Name            string
	ResourceVersion string
	Spec            Spec
	Status          Status
}

// fromUnstructured reads an Upgrade object.
func fromUnstructured(u *unstructured.Unstructured) (Upgrade, error) {
	var obj struct {
		Spec   Spec   `json:"spec"`
		Status Status `json:"status"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &obj); err != nil {
		return Upgrade{}, fmt.Errorf("upgrade %s: %w", u.GetName(), err)
	}
	if obj.Spec.Concurrency < 1 {
		obj.Spec.Concurrency = 1
	}
	return Upgrade{Name: u.GetName(), ResourceVersion: u.GetResourceVersion(), Spec: obj.Spec, Status: obj.Status}, nil
}

// drain reports whether the upgrade drains nodes (the default).
func (s Spec) drain() bool { return s.Drain == nil || *s.Drain }

// Plan is what the controller hands a node.
type Plan struct {
	Upgrade string `json:"upgrade"` // the Upgrade's name
	Version string `json:"version"`
	URL     string `json:"url,omitempty"`
	Path    string `json:"path,omitempty"`
}

// ParsePlan reads a PlanAnnotation.
func ParsePlan(s string) (Plan, error) {
	var p Plan
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return p, fmt.Errorf("annotation %s: %w", PlanAnnotation, err)
	}
	if p.Version == "" || (p.URL == "") == (p.Path == "") {
		return p, fmt.Errorf("annotation %s: want a version and exactly one of url and path", PlanAnnotation)
	}
	return p, nil
}

func (p Plan) String() string {
	raw, _ := json.Marshal(p)
	return string(raw)
}

// ErrRestart ends the process for a restart (Restart): returned (through
// the component's Err) by a node whose new binary is installed, or by an
// agent whose cluster settings changed.
var ErrRestart = errors.New("kedge restarts to apply it")
