// Package metricsserver runs sigs.k8s.io/metrics-server inside the kedge
// process on every server: the Metrics API (metrics.k8s.io/v1beta1) that
// `kubectl top` and HorizontalPodAutoscalers read.
//
// The aggregator in the apiserver forwards /apis/metrics.k8s.io requests to
// the APIService v1beta1.metrics.k8s.io, which this package registers once
// metrics-server serves (apiservice.go); its Service,
// kube-system/metrics-server (manifests/metrics-server.yaml), lists every
// server at Port: this package mirrors the addresses of the kubernetes
// Service's EndpointSlice into it (endpoints.go). metrics-server serves with a
// certificate of the cluster's server CA for metrics-server.kube-system.svc,
// authenticates the aggregator by the front-proxy CA and authorizes by
// SubjectAccessReview, as upstream; it scrapes every kubelet's
// /metrics/resource on 10250 with its own client certificate
// (system:kedge-metrics-server), verified against the kubelet serving CA.
//
//	ms := metricsserver.New(metricsserver.Config{
//		Kubeconfig:      "/var/lib/kedge/server/cred/metrics-server.kubeconfig",
//		AdminKubeconfig: "/var/lib/kedge/server/cred/admin.kubeconfig",
//		BindAddress:     net.IPv4zero,
//		ServingCert:     b.MetricsServerCert, ServingKey: b.MetricsServerKey,
//		ServerCA:        b.ServerCA,
//		RequestHeaderCA: b.RequestHeaderCA,
//		Log:             log,
//	})
//	_ = ms.Start(ctx) // binds Port; scrapes every Resolution
package metricsserver
