package registries

import (
	"fmt"

	"github.com/distribution/reference"
)

// rewritePlan is how the image proxy pulls one image whose registry's mirror
// rewrites names: pull (a name in RewriteHost(registry)) through the mirror's
// endpoints, then name the result image as the kubelet asked.
type rewritePlan struct {
	registry string // the image's registry, e.g. docker.io
	image    string // the normalized name asked for, e.g. docker.io/rancher/pause:3.6
	pull     string // the name pulled, e.g. docker-io.kedge-rewrite.invalid/mirror/rancher/pause:3.6
	repo     string // the repository asked for, e.g. docker.io/rancher/pause
	pullRepo string // the repository pulled
	rewrote  bool   // a pattern matched (otherwise the mirror is asked for the name as it is)
}

// planRewrite returns the plan for image, or false when its registry's
// mirror (own or wildcard) has no rewrites: containerd pulls it as usual.
func (r Registries) planRewrite(image string) (rewritePlan, bool, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return rewritePlan{}, false, nil // containerd gives the error
	}
	registry := reference.Domain(named)
	m, ok := r.mirrorFor(registry)
	if !ok || len(m.Rewrites) == 0 {
		return rewritePlan{}, false, nil
	}
	path, rewrote := m.Rewrites.Apply(reference.Path(named))
	pullRepo, err := reference.ParseNamed(RewriteHost(registry) + "/" + path)
	if err != nil {
		key := registry
		if _, own := r.Mirrors[registry]; !own {
			key = Wildcard
		}
		return rewritePlan{}, false, fmt.Errorf("%s: mirrors.%q.rewrite turns %s into %q, not a repository name", r.source(), key, reference.Path(named), path)
	}
	p := rewritePlan{registry: registry, image: named.String(), repo: named.Name(), pullRepo: pullRepo.Name(), rewrote: rewrote}
	var pull reference.Named = pullRepo
	if t, ok := named.(reference.Tagged); ok {
		if pull, err = reference.WithTag(pull, t.Tag()); err != nil {
			return rewritePlan{}, false, err
		}
	}
	if d, ok := named.(reference.Digested); ok {
		if pull, err = reference.WithDigest(pull, d.Digest()); err != nil {
			return rewritePlan{}, false, err
		}
	}
	p.pull = pull.String()
	return p, true, nil
}

// source names the file for messages.
func (r Registries) source() string {
	if r.File == "" {
		return "registries.yaml"
	}
	return r.File
}
