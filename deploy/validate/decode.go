// Package validate checks eventswarm's Kubernetes manifests (deploy/) against
// the Kubernetes API types: every document decodes strictly into its
// k8s.io/api type (an unknown field, a duplicate key or a wrong type fails),
// the kustomize base and overlays build, and what strict decoding cannot see
// is asserted by the tests (validate_test.go). It is its own module so that
// eventswarm's module does not pull Kubernetes.
package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// header is what every document says it is.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// newObject is an empty typed object for apiVersion/kind, or an error for a
// kind eventswarm's manifests do not use (a typo in kind or apiVersion is
// caught here, not silently skipped).
func newObject(h header) (any, error) {
	switch h.APIVersion + " " + h.Kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	case "batch/v1 Job":
		return &batchv1.Job{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kusttypes.Kustomization{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q kind %q is not a kind these manifests use (typo?)", h.APIVersion, h.Kind)
}

// Documents splits a multi-document YAML stream, dropping empty documents
// (comments only).
func Documents(data []byte) ([][]byte, error) {
	r := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if isEmpty(doc) {
			continue
		}
		docs = append(docs, doc)
	}
}

func isEmpty(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}

// Decode decodes one document strictly into its typed object: unknown
// fields, duplicate keys and values of the wrong type are errors.
func Decode(doc []byte) (any, error) {
	var h header
	if err := yaml.Unmarshal(doc, &h); err != nil {
		return nil, err
	}
	if h.APIVersion == "" || h.Kind == "" {
		return nil, errors.New("document has no apiVersion or kind")
	}
	obj, err := newObject(h)
	if err != nil {
		return nil, err
	}
	// As the API server decodes: YAML to JSON without looking at the target
	// type (so 4 stays a number, and a string field given 4 fails), then a
	// case-sensitive JSON decode that reports unknown and duplicate fields.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Kind, err)
	}
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Kind, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %w", h.Kind, errors.Join(strict...))
	}
	return obj, nil
}

// DecodeAll decodes every document of a YAML stream strictly.
func DecodeAll(data []byte) ([]any, error) {
	docs, err := Documents(data)
	if err != nil {
		return nil, err
	}
	var objs []any
	var errs []error
	for i, d := range docs {
		obj, err := Decode(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		objs = append(objs, obj)
	}
	return objs, errors.Join(errs...)
}
