package podnet

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	if err := WriteConfig(dir, "cni0", "10.42.3.0/24", 1450); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ConfFile))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			MTU    int    `json:"mtu"`
			IPAM   struct {
				Type   string                `json:"type"`
				Ranges [][]map[string]string `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins = %+v", conf.Plugins)
	}
	b := conf.Plugins[0]
	if b.Bridge != "cni0" || b.MTU != 1450 || b.IPAM.Type != "host-local" || b.IPAM.Ranges[0][0]["subnet"] != "10.42.3.0/24" {
		t.Fatalf("bridge plugin = %+v", b)
	}
	st, _ := os.Stat(filepath.Join(dir, ConfFile))
	if err := WriteConfig(dir, "cni0", "10.42.3.0/24", 1450); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(dir, ConfFile))
	if !st.ModTime().Equal(st2.ModTime()) {
		t.Fatal("an identical config was rewritten")
	}
	if err := WriteConfig(dir, "cni0", "bogus", 0); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitPodCIDR(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	go func() {
		time.Sleep(700 * time.Millisecond)
		node, _ := client.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
		node.Spec.PodCIDR = "10.42.9.0/24"
		_, _ = client.CoreV1().Nodes().Update(t.Context(), node, metav1.UpdateOptions{})
	}()
	cidr, err := waitPodCIDR(t.Context(), client, "n1")
	if err != nil || cidr != "10.42.9.0/24" {
		t.Fatalf("waitPodCIDR = %q, %v", cidr, err)
	}
}
