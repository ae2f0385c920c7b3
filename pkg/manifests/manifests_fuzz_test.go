package manifests

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	builtin "github.com/kedge-io/kedge/manifests"
)

// streamSeeds are manifest files, real and hostile: several documents,
// JSON, lists, empty and comment-only documents, objects without kind or
// name, wrong types, anchors, tabs, deep nesting and malformed YAML.
var streamSeeds = []string{
	"",
	"---\n",
	"# only a comment\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: kube-system\ndata:\n  k: v\n",
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
	`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`,
	`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}} {"apiVersion":"v1","kind":"Secret","metadata":{"name":"b"}}`,
	"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\nmetadata: {name: l}\n",
	"kind: ConfigMap\nmetadata: {name: a}\n",
	"apiVersion: v1\nkind: ConfigMap\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: a-\n",
	"apiVersion: 1\nkind: [ConfigMap]\nmetadata: a\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n- just\n- a list\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nplain scalar\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: &d {k: v}\nother: *d\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: .nan, j: .inf, big: 123456789012345678901234567890}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n\tdata: tab\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n1: int key\n",
	"a: &a [x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
	strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
	"{" + strings.Repeat(`"a":{`, 2000) + strings.Repeat("}", 2001),
	"{\"apiVersion\": \"v1\",",
	"\xff\xfe\x00",
}

// FuzzDecode checks the YAML stream split and decode of a manifest file:
// it never panics; an error names the document; the objects it returns
// have apiVersion, kind and metadata.name, and read back the same from
// their JSON (what apply sends).
func FuzzDecode(f *testing.F) {
	for _, s := range streamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		objs, err := decode(stream)
		if err != nil {
			if objs != nil || !strings.HasPrefix(err.Error(), "document ") {
				t.Fatalf("decode error %q (with %d objects): want no object and the document named", err, len(objs))
			}
			return
		}
		var again bytes.Buffer
		for _, obj := range objs {
			if obj.GetAPIVersion() == "" || obj.GetKind() == "" || obj.GetName() == "" {
				t.Fatalf("object %v lacks apiVersion, kind or metadata.name", obj.Object)
			}
			raw, err := obj.MarshalJSON()
			if err != nil {
				t.Fatalf("object %v: %v", obj.Object, err)
			}
			again.Write(raw)
			again.WriteString("\n")
		}
		back, err := decode(again.Bytes())
		if err != nil || len(back) != len(objs) {
			t.Fatalf("the JSON of the objects decodes to %d objects, %v; want %d", len(back), err, len(objs))
		}
		for i := range objs {
			if !reflect.DeepEqual(jsonOf(t, objs[i].Object), jsonOf(t, back[i].Object)) {
				t.Errorf("object %d changed through JSON: %v, then %v", i, objs[i].Object, back[i].Object)
			}
		}
	})
}

// jsonOf returns v as encoding/json reads it back, so that numbers compare
// by value whatever their Go type.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// identities lists the objects of rendered manifests: file, kind,
// namespace and name.
func identities(t *testing.T, docs map[string][]byte) []string {
	t.Helper()
	var ids []string
	for file, doc := range docs {
		objs, err := decode(doc)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, o := range objs {
			ids = append(ids, file+" "+o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
		}
	}
	return ids
}

// FuzzRender renders the built-in manifests with any cluster settings: it
// never panics; a setting that is not what it stands for is an error
// naming the Values field; otherwise the manifests hold the same objects
// as with the defaults, so that no setting can add, drop or rename one.
func FuzzRender(f *testing.F) {
	defaults, err := Render(builtin.FS, Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"})
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []Values{
		{"10.43.0.10", "cluster.local"},
		{"fd00:43::a", "example.com"},
		{"", ""},
		{"<nil>", "cluster.local"},
		{"10.43.0.10\n  type: NodePort", "cluster.local"},
		{"10.43.0.10\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}", "cluster.local"},
		{"10.43.0.10 # comment", "cluster.local"},
		{"{{ .ClusterDNS }}", "cluster.local"},
		{"10.43.0.10", "cluster.local\nkind: Secret"},
		{"10.43.0.10", "Cluster.Local."},
		{"10.43.0.10", strings.Repeat("a", 300)},
	} {
		f.Add(v.ClusterDNS, v.ClusterDomain)
	}
	f.Fuzz(func(t *testing.T, dns, domain string) {
		want := identities(t, defaults)
		docs, err := Render(builtin.FS, Values{ClusterDNS: dns, ClusterDomain: domain})
		if err != nil {
			if !strings.Contains(err.Error(), "Values.Cluster") && !strings.HasPrefix(err.Error(), "manifest ") {
				t.Fatalf("Render error %q names neither a Values field nor a manifest", err)
			}
			return
		}
		got := identities(t, docs)
		if !sameSet(got, want) {
			t.Errorf("with ClusterDNS %q, ClusterDomain %q the manifests hold %q, want %q", dns, domain, got, want)
		}
	})
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// Regressions: a ClusterDNS with a newline and keys turned the CoreDNS
// Service into a NodePort or added objects (found by FuzzRender's seeds);
// a document without kind or name reached the apiserver, and a malformed
// document after good ones left those applied (FuzzDecode's seeds).
func TestRenderRefusesValuesThatChangeTheManifests(t *testing.T) {
	for _, v := range []Values{
		{ClusterDNS: "10.43.0.10\n  type: NodePort", ClusterDomain: "cluster.local"},
		{ClusterDNS: "<nil>", ClusterDomain: "cluster.local"},
		{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local\nkind: Secret"},
	} {
		_, err := Render(builtin.FS, v)
		if err == nil || !strings.Contains(err.Error(), "Values.Cluster") {
			t.Errorf("Render(%+v) = %v, want an error naming the Values field", v, err)
		}
	}
}

func TestDecodeRefusesTheWholeStreamForOneBadDocument(t *testing.T) {
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
	for _, tc := range []struct{ stream, want string }{
		{good + "---\nkind: ConfigMap\nmetadata: {name: b}\n", "document 2: want the strings apiVersion, kind and metadata.name"},
		{good + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: b-}\n", "document 2: want"},
		{good + "---\napiVersion: v1\nkind: [ConfigMap]\nmetadata: {name: b}\n", "document 2: want"},
		{good + "---\n- a list\n", "document 2:"},
		{good + "---\nkey: [unclosed\n", "document 2:"},
	} {
		objs, err := decode([]byte(tc.stream))
		if err == nil || !strings.Contains(err.Error(), tc.want) || objs != nil {
			t.Errorf("decode(%q) = %d objects, %v; want none and an error with %q", tc.stream, len(objs), err, tc.want)
		}
	}
	objs, err := decode([]byte("---\n# nothing\n---\n" + good + "---\n"))
	if err != nil || len(objs) != 1 || objs[0].GetName() != "a" {
		t.Errorf("decode with empty documents = %v, %v; want the ConfigMap a", objs, err)
	}
}
