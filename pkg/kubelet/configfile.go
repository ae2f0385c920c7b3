package kubelet

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletconversion "k8s.io/kubernetes/pkg/kubelet/apis/config/v1beta1"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
)

// mergeConfigFiles applies the KubeletConfiguration files named by the
// kubelet's config and config-dir flags over kc, as JSON merge patches of the
// v1beta1 form, in the kubelet's own order: the config file, then the
// drop-ins of dir (*.conf, lexical order, subdirectories included). Unlike
// the standalone kubelet, whose config file replaces the built-in defaults,
// a file here changes only the fields it sets: kedge's defaults stay. Paths
// inside the files must be absolute.
func mergeConfigFiles(kc *kubeletconfig.KubeletConfiguration, file, dir string) (*kubeletconfig.KubeletConfiguration, error) {
	versioned := &kubeletv1beta1.KubeletConfiguration{}
	if err := kubeletconversion.Convert_config_KubeletConfiguration_To_v1beta1_KubeletConfiguration(kc, versioned, nil); err != nil {
		return nil, fmt.Errorf("convert configuration: %w", err)
	}
	merged, err := json.Marshal(versioned)
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	var files []string
	if file != "" {
		files = append(files, file)
	}
	if dir != "" {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && filepath.Ext(path) == ".conf" {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("config-dir %s: %w", dir, err)
		}
	}
	for _, path := range files {
		if merged, err = mergeConfigFile(merged, path); err != nil {
			return nil, err
		}
	}
	versioned = &kubeletv1beta1.KubeletConfiguration{}
	if err := json.Unmarshal(merged, versioned); err != nil {
		return nil, fmt.Errorf("decode merged configuration: %w", err)
	}
	kubeletconversion.SetDefaults_KubeletConfiguration(versioned)
	out := &kubeletconfig.KubeletConfiguration{}
	if err := kubeletconversion.Convert_v1beta1_KubeletConfiguration_To_config_KubeletConfiguration(versioned, out, nil); err != nil {
		return nil, fmt.Errorf("convert merged configuration: %w", err)
	}
	return out, nil
}

// mergeConfigFile merges one KubeletConfiguration file into base (JSON).
func mergeConfigFile(base []byte, path string) ([]byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, abs)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	patch, gvk, err := loader.LoadIntoJSON()
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if gvk == nil || *gvk != kubeletv1beta1.SchemeGroupVersion.WithKind("KubeletConfiguration") {
		return nil, fmt.Errorf("config file %s: want apiVersion %s, kind KubeletConfiguration", path, kubeletv1beta1.SchemeGroupVersion)
	}
	out, err := jsonpatch.MergePatch(base, patch)
	if err != nil {
		return nil, fmt.Errorf("config file %s: merge: %w", path, err)
	}
	return out, nil
}
