package pki

// CAFiles lists the files every server of a cluster shares: the CA
// certificates and keys and the service-account key pair. A joining server
// gets them from the supervisor; a snapshot carries them, sealed.
func (b Bundle) CAFiles() []string {
	return []string{
		b.ServerCA, b.ServerCAKey, b.ClientCA, b.ClientCAKey, b.RequestHeaderCA, b.RequestHeaderCAKey,
		b.EtcdServerCA, b.EtcdServerCAKey, b.EtcdPeerCA, b.EtcdPeerCAKey, b.ServiceAccountKey, b.ServiceAccountPub,
	}
}
