package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the app file at path over DefaultConfig and validates it. Every
// error names the file, the field path and the reason, e.g.
// `app.yaml: agents[0].tables: unknown table "cnts"`.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read app file: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, InFile(path, err)
	}
	return cfg, nil
}

// Parse decodes an app file over DefaultConfig without validating it, so
// overrides can still be applied before Validate.
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the app file is empty")
		}
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	cfg := DefaultConfig()
	if errs := checkNode(doc, reflect.TypeOf(*cfg), ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := doc.Decode(cfg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return cfg, nil
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// checkNode walks the YAML tree against the Go type and reports, with the
// field path, every unknown field and every value of the wrong shape. It
// exists because yaml.v3's own errors name Go types instead of fields.
func checkNode(n *yaml.Node, t reflect.Type, path string) []error {
	where := func(format string, args ...any) error {
		p := path
		if p == "" {
			p = "(top level)"
		}
		return fmt.Errorf("%s: line %d: %s", p, n.Line, fmt.Sprintf(format, args...))
	}
	if n.Kind == yaml.AliasNode {
		return checkNode(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			return []error{where("want a single value")}
		}
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(n.Value)); err != nil {
			return []error{where("%v", err)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkNode(n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []error{where("want a mapping of fields (%s)", strings.Join(fieldNames(t), ", "))}
		}
		var errs []error
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := join(path, k.Value)
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: line %d: unknown field (known fields: %s)",
					sub, k.Line, strings.Join(fieldNames(t), ", ")))
				continue
			}
			if seen[k.Value] {
				errs = append(errs, fmt.Errorf("%s: line %d: field given twice", sub, k.Line))
			}
			seen[k.Value] = true
			errs = append(errs, checkNode(v, f.Type, sub)...)
		}
		return errs
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{where("want a list")}
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
		return errs
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []error{where("want a mapping")}
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
		return errs
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return []error{where("want a string")}
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			return []error{where("want a whole number")}
		}
		if _, err := strconv.Atoi(n.Value); err != nil {
			return []error{where("want a whole number, got %q", n.Value)}
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			return []error{where("want true or false")}
		}
		if _, err := strconv.ParseBool(n.Value); err != nil {
			return []error{where("want true or false, got %q", n.Value)}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	return names
}

// InFile puts the file name before each error joined in err, one per line,
// so validation errors read "app.yaml: agents[0].tables: ...".
func InFile(file string, err error) error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, fmt.Errorf("%s: %w", file, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", file, err)
}
