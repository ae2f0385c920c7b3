// Package token keeps kedge's join tokens beyond the two static ones in the
// data dir: kubeadm-style bootstrap tokens (Secrets bootstrap-token-<id> in
// kube-system, with an expiry and usages) that `kedge token create` makes
// and the supervisor checks, and the server token's rotation (`kedge token
// rotate`), which every server picks up from the Secret kube-system/
// kedge-server-token.
//
//	tok, err := token.Create(ctx, client, token.CreateOptions{TTL: 24 * time.Hour, Usages: []token.Usage{token.UsageAgent}})
//	fmt.Println(join.Token{CAHash: join.CAHash(caPEM), Secret: tok.Secret}) // KEDGE1<hash>::abcdef.0123456789abcdef
package token

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecret "k8s.io/cluster-bootstrap/util/secrets"
)

// Usage is what a bootstrap token may join.
type Usage string

// The usages of a kedge bootstrap token. A server token also joins agents,
// as the cluster's server token does.
const (
	UsageAgent  Usage = "agent"
	UsageServer Usage = "server"
)

// usageKey is the Secret key of a usage: "usage-bootstrap-kedge-<usage>".
// kedge does not set kubeadm's "authentication" usage: a kedge token is no
// credential for the apiserver.
func usageKey(u Usage) string { return bootstrapapi.BootstrapTokenUsagePrefix + "kedge-" + string(u) }

// ParseUsage reads a --usages value.
func ParseUsage(s string) (Usage, error) {
	switch u := Usage(strings.TrimSpace(s)); u {
	case UsageAgent, UsageServer:
		return u, nil
	}
	return "", fmt.Errorf("--usages %q: want agent or server", s)
}

// PruneAfter is how long an expired token is kept (and refused as expired)
// before Create deletes it.
const PruneAfter = 7 * 24 * time.Hour

// CreateOptions are the flags of `kedge token create`.
type CreateOptions struct {
	// TTL is how long the token is valid; 0: it never expires.
	TTL time.Duration
	// Description is shown by List.
	Description string
	// Usages are what the token joins (default: agents).
	Usages []Usage
	// Now is the current time (time.Now when zero).
	Now time.Time
}

// Info describes a bootstrap token, without its secret.
type Info struct {
	ID          string
	Expires     time.Time // zero: never
	Usages      []Usage
	Description string
}

// Created is a new token: its Info and its "<id>.<secret>" secret.
type Created struct {
	Info
	Secret string
}

// Create stores a new random bootstrap token as the Secret
// kube-system/bootstrap-token-<id> and returns it. It deletes tokens that
// expired more than PruneAfter ago.
func Create(ctx context.Context, client kubernetes.Interface, o CreateOptions) (Created, error) {
	if o.TTL < 0 {
		return Created{}, fmt.Errorf("--ttl %s: must not be negative (0: never expires)", o.TTL)
	}
	if len(o.Usages) == 0 {
		o.Usages = []Usage{UsageAgent}
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	_ = prune(ctx, client, now)
	raw, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Created{}, err
	}
	id, secret, _ := strings.Cut(raw, ".")
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:     []byte(id),
		bootstrapapi.BootstrapTokenSecretKey: []byte(secret),
	}
	info := Info{ID: id, Usages: o.Usages, Description: o.Description}
	if o.TTL > 0 {
		info.Expires = now.Add(o.TTL).UTC().Truncate(time.Second)
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(info.Expires.Format(time.RFC3339))
	}
	if o.Description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(o.Description)
	}
	for _, u := range o.Usages {
		data[usageKey(u)] = []byte("true")
	}
	_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		return Created{}, fmt.Errorf("store token %s: %w", id, err)
	}
	return Created{Info: info, Secret: raw}, nil
}

// List returns the bootstrap tokens, oldest expiry last, never their secrets.
func List(ctx context.Context, client kubernetes.Interface) ([]Info, error) {
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken),
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var out []Info
	for i := range list.Items {
		if info, ok := infoOf(&list.Items[i]); ok {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes the token whose ID (or "<id>.<secret>", or full kedge
// token) is given; NotFoundError if there is none.
func Delete(ctx context.Context, client kubernetes.Interface, idOrToken string) error {
	id := IDOf(idOrToken)
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return fmt.Errorf("token ID %q: want 6 characters a-z and 0-9 (the part before the '.'), as `kedge token list` shows", idOrToken)
	}
	err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return &NotFoundError{ID: id}
	}
	return err
}

// IDOf returns the ID of a token given as its ID, "<id>.<secret>" or a
// full kedge token "KEDGE1<hash>::<id>.<secret>".
func IDOf(s string) string {
	if i := strings.LastIndex(s, "::"); i >= 0 {
		s = s[i+2:]
	}
	id, _, _ := strings.Cut(s, ".")
	return id
}

// prune deletes tokens that expired more than PruneAfter before now.
func prune(ctx context.Context, client kubernetes.Interface, now time.Time) error {
	infos, err := List(ctx, client)
	if err != nil {
		return err
	}
	for _, t := range infos {
		if !t.Expires.IsZero() && now.Sub(t.Expires) > PruneAfter {
			_ = Delete(ctx, client, t.ID)
		}
	}
	return nil
}

// infoOf reads a bootstrap token Secret; ok is false for another Secret.
func infoOf(s *corev1.Secret) (Info, bool) {
	id, ok := bootstrapsecret.ParseName(s.Name)
	if !ok || s.Type != bootstrapapi.SecretTypeBootstrapToken || bootstrapsecret.GetData(s, bootstrapapi.BootstrapTokenIDKey) != id {
		return Info{}, false
	}
	info := Info{ID: id, Description: bootstrapsecret.GetData(s, bootstrapapi.BootstrapTokenDescriptionKey)}
	if exp := bootstrapsecret.GetData(s, bootstrapapi.BootstrapTokenExpirationKey); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			t = time.Unix(0, 0) // unreadable: expired, as the apiserver's bootstrap authenticator takes it
		}
		info.Expires = t
	}
	for _, u := range []Usage{UsageAgent, UsageServer} {
		if bootstrapsecret.GetData(s, usageKey(u)) == "true" {
			info.Usages = append(info.Usages, u)
		}
	}
	return info, true
}

// IsBootstrapToken reports whether secret has the form "<id>.<secret>" of
// a bootstrap token.
func IsBootstrapToken(secret string) bool { return bootstraputil.IsValidBootstrapToken(secret) }

// NotFoundError is a token that does not exist.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("token %s does not exist (deleted, or never created): ask for a new one (`kedge token create` on a server)", e.ID)
}

// ExpiredError is a token past its expiry.
type ExpiredError struct {
	ID      string
	Expired time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("token %s expired at %s: ask for a new one (`kedge token create` on a server)", e.ID, e.Expired.UTC().Format(time.RFC3339))
}

// ErrWrongSecret is a token whose ID exists with another secret.
var ErrWrongSecret = errors.New("the token's secret is wrong")

// UsageError is a token used for what its usages do not allow.
type UsageError struct {
	ID     string
	Want   Usage
	Usages []Usage
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("token %s may not join a%s %s (its usages: %v): create one with --usages %s", e.ID, map[bool]string{true: "n"}[e.Want == UsageAgent], e.Want, e.Usages, e.Want)
}

// Check looks the bootstrap token secret ("<id>.<secret>") up and reports
// whether it may join as want (a server token also joins agents) at now. A
// refusal is a *NotFoundError, *ExpiredError, *UsageError or
// ErrWrongSecret; any other error is the API's (worth a retry).
func Check(ctx context.Context, client kubernetes.Interface, secret string, want Usage, now time.Time) error {
	id, tokenSecret, ok := strings.Cut(secret, ".")
	if !ok || !IsBootstrapToken(secret) {
		return ErrWrongSecret
	}
	s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &NotFoundError{ID: id}
	} else if err != nil {
		return fmt.Errorf("look up token %s: %w", id, err)
	}
	info, ok := infoOf(s)
	if !ok {
		return &NotFoundError{ID: id}
	}
	if subtle.ConstantTimeCompare([]byte(bootstrapsecret.GetData(s, bootstrapapi.BootstrapTokenSecretKey)), []byte(tokenSecret)) != 1 {
		return ErrWrongSecret
	}
	if !info.Expires.IsZero() && !now.Before(info.Expires) {
		return &ExpiredError{ID: id, Expired: info.Expires}
	}
	if !slices.Contains(info.Usages, want) && !(want == UsageAgent && slices.Contains(info.Usages, UsageServer)) {
		return &UsageError{ID: id, Want: want, Usages: info.Usages}
	}
	return nil
}

// Refused reports whether err from Check is a refusal (not an API error).
func Refused(err error) bool {
	var (
		nf *NotFoundError
		ex *ExpiredError
		us *UsageError
	)
	return errors.Is(err, ErrWrongSecret) || errors.As(err, &nf) || errors.As(err, &ex) || errors.As(err, &us)
}
