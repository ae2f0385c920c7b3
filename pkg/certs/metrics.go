package certs

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// expiration is kedge_certificate_expiration_seconds. It lives in
// component-base's legacy registry, the process-wide one the apiserver
// (/metrics on 6443), the kubelet (/metrics on 10250) and kube-proxy
// (127.0.0.1:10249/metrics) serve; a registry accepts a metric once, so it
// is registered once per process.
var (
	expiration = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace:      "kedge",
		Subsystem:      "certificate",
		Name:           "expiration_seconds",
		Help:           "When a certificate kedge issued expires, in seconds since the Unix epoch; label file: its PEM file, or kubeconfig#user for one embedded in a kubeconfig.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"file"})
	registerOnce sync.Once
)

// publish sets the metric to exactly certs (files gone are dropped). Of
// several certificates in one file (a CA bundle), the earliest expiry wins.
func publish(certs []Cert) {
	registerOnce.Do(func() { legacyregistry.MustRegister(expiration) })
	earliest := map[string]float64{}
	for _, c := range certs {
		v := float64(c.NotAfter.Unix())
		if old, ok := earliest[c.Label()]; !ok || v < old {
			earliest[c.Label()] = v
		}
	}
	expiration.Reset()
	for file, v := range earliest {
		expiration.WithLabelValues(file).Set(v)
	}
}
