// Package manifests holds the add-on manifests every kedge cluster gets,
// as text/template files rendered with the cluster's settings (see
// pkg/manifests for the controller that applies them).
package manifests

import "embed"

// FS holds the built-in manifests (*.yaml).
//
//go:embed *.yaml
var FS embed.FS
