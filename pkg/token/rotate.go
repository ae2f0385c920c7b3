package token

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

// ServerTokenSecret is the Secret in kube-system that holds the cluster's
// server token once it has been rotated (`kedge token rotate`); every
// server's supervisor takes its "secret" key over its token file.
const ServerTokenSecret = "kedge-server-token"

// serverTokenKey is the data key of ServerTokenSecret.
const serverTokenKey = "secret"

// Rotate makes secret the cluster's server token: every server's Sync picks
// it up within seconds, after which a join with the previous token is
// refused. Nodes that joined keep their credentials. secret must differ from
// agentSecret, which joins agents only.
func Rotate(ctx context.Context, client kubernetes.Interface, secret, agentSecret string) error {
	if secret == agentSecret {
		return errors.New("--new-token: it is the agent token's secret (<data-dir>/server/agent-token), which joins agents only: choose another")
	}
	secrets := client.CoreV1().Secrets(metav1.NamespaceSystem)
	want := map[string][]byte{serverTokenKey: []byte(secret)}
	cur, err := secrets.Get(ctx, ServerTokenSecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: ServerTokenSecret, Namespace: metav1.NamespaceSystem},
			Type:       "kedge.io/server-token",
			Data:       want,
		}, metav1.CreateOptions{})
	case err == nil:
		cur.Data = want
		_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("store the new server token in kube-system/%s: %w", ServerTokenSecret, err)
	}
	return nil
}

// SyncConfig configures a server's Sync.
type SyncConfig struct {
	// NewClient returns an admin client of the local apiserver.
	NewClient func() (kubernetes.Interface, error)
	// TokenFile is <data-dir>/server/token, rewritten on rotation.
	TokenFile string
	// RotatedFile keeps the SHA-256 of every retired secret, one a line, so
	// that a restart with the previous --token is recognised (see Retired).
	RotatedFile string
	// CAFile is the bundle /cacerts serves (the token file's hash), read
	// when the token changes.
	CAFile string
	// FileSecret is the secret the token file held at start.
	FileSecret string
	Log        *slog.Logger
}

// Sync is the component that keeps a server's view of the server token
// current: it watches ServerTokenSecret and rewrites the token file when the
// token is rotated. Current answers the supervisor.
type Sync struct {
	cfg    SyncConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup
	synced chan struct{}

	mu      sync.Mutex
	current string
	seen    bool
}

var _ component.Component = (*Sync)(nil)

// NewSync returns the component; nothing runs until Start.
func NewSync(cfg SyncConfig) *Sync {
	return &Sync{cfg: cfg, current: cfg.FileSecret, synced: make(chan struct{})}
}

// Name implements component.Component.
func (*Sync) Name() string { return "token-sync" }

// Current returns the server token's secret the cluster accepts now. Until
// the first sync with the API it is an error: a join is then answered
// "try again", so a token rotated while this server was down is never
// accepted.
func (s *Sync) Current() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		return "", errors.New("the server token is not synced with the cluster yet")
	}
	return s.current, nil
}

// Start watches the Secret.
func (s *Sync) Start(ctx context.Context) error {
	client, err := s.cfg.NewClient()
	if err != nil {
		return err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(metav1.NamespaceSystem),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ServerTokenSecret).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.apply(obj) },
		UpdateFunc: func(_, obj any) { s.apply(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			s.mu.Lock()
			s.seen = true
			s.mu.Unlock()
			close(s.synced)
		}
		<-ctx.Done()
		factory.Shutdown()
	}()
	return nil
}

// apply takes a new server token from the Secret.
func (s *Sync) apply(obj any) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	secret := strings.TrimSpace(string(sec.Data[serverTokenKey]))
	if secret == "" {
		return
	}
	s.mu.Lock()
	old := s.current
	s.current = secret
	s.mu.Unlock()
	if old == secret {
		return
	}
	if err := retire(s.cfg.RotatedFile, old); err != nil {
		s.cfg.Log.Warn("could not record the retired server token", "file", s.cfg.RotatedFile, "err", err)
	}
	caPEM, err := pki.PinnedCA(s.cfg.CAFile) // the CA /cacerts serves
	if err != nil {
		s.cfg.Log.Error("could not write the rotated server token", "file", s.cfg.TokenFile, "err", err)
		return
	}
	if err := join.WriteTokenFile(s.cfg.TokenFile, join.New(caPEM, secret)); err != nil {
		s.cfg.Log.Error("could not write the rotated server token", "file", s.cfg.TokenFile, "err", err)
		return
	}
	s.cfg.Log.Info("the server token was rotated: joins need the new one", "file", s.cfg.TokenFile)
}

// Ready waits for the first sync.
func (s *Sync) Ready(ctx context.Context) error {
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the watch.
func (s *Sync) Stop(context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

// retire appends the SHA-256 of secret to path (0600).
func retire(path, secret string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, hashSecret(secret)); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Retired reports whether secret is a server token that was rotated away,
// as recorded in path (see SyncConfig.RotatedFile).
func Retired(path, secret string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	want := hashSecret(secret)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == want {
			return true
		}
	}
	return false
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
