// Package join holds what a node needs to join a kedge cluster by token:
// the token format, the server's token file, and a client of the
// supervisor API that pins the cluster CA before it sends any secret.
//
// A token is "KEDGE1<sha256 hex of the CA bundle>::<secret>" (see Prefix).
// The first server writes it to <data-dir>/server/token with
// EnsureTokenFile. A joining node parses --token with Parse, fetches the CA
// bundle from the unauthenticated /cacerts with FetchCA, which refuses a
// bundle whose hash differs from the token's and checks that the server's
// certificate chains to that bundle, and only then talks to the
// authenticated endpoints through a Supervisor, sending the secret as HTTP
// basic auth. A bare secret (no hash) still joins, with a warning that the
// CA is not pinned.
//
// On the first server:
//
//	tok, err := join.EnsureTokenFile("/var/lib/kedge/server/token", caPEM, flagToken.Secret)
//	if err != nil {
//		return err
//	}
//	log.Info("join other nodes with the --token in /var/lib/kedge/server/token", "token", tok) // logs the CA hash, not the secret
//
// On a joining agent:
//
//	tok, err := join.Parse(cfg.Token) // --token
//	if err != nil {
//		return err
//	}
//	caPEM, err := join.FetchCA(ctx, cfg.Server, tok, log)
//	if err != nil {
//		return err
//	}
//	sup, err := join.NewSupervisor(cfg.Server, caPEM, tok, join.UserNode)
//	if err != nil {
//		return err
//	}
//	defer sup.Close()
//	body, err := sup.Get(ctx, "/v1/config")
package join
