package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/monitor"
)

const (
	alertsFile     = "prometheus/alerts.yml"
	alertsTestFile = "prometheus/alerts_test.yml"
)

// metricToken finds Eddy metric names in PromQL and YAML text.
var metricToken = regexp.MustCompile(`\beddy_[a-z0-9_]+`)

// promtool returns the path of promtool, or fails the test saying how to
// get it: these checks are part of `make test` and must not pass silently.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found: install the Debian package prometheus (apt-get install prometheus); .ci/run does")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestAlertRulesCheck(t *testing.T) {
	runPromtool(t, "check", "rules", alertsFile)
}

func TestAlertRulesUnitTests(t *testing.T) {
	runPromtool(t, "test", "rules", alertsTestFile)
}

// TestEveryAlertTested keeps alerts_test.yml in step with alerts.yml: each
// alert needs a case where it fires (a test is written as one of exp_alerts'
// entries under the alert's name).
func TestEveryAlertTested(t *testing.T) {
	rules := readFile(t, alertsFile)
	tests := readFile(t, alertsTestFile)
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(rules, -1)
	if len(alerts) == 0 {
		t.Fatalf("%s: no alerts found", alertsFile)
	}
	for _, a := range alerts {
		if !strings.Contains(tests, "alertname: "+a[1]+"\n") {
			t.Errorf("%s: alert %s has no alert_rule_test in %s", alertsFile, a[1], alertsTestFile)
		}
	}
}

func TestAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, f := range []string{alertsFile, alertsTestFile} {
		for _, name := range metricToken.FindAllString(readFile(t, f), -1) {
			if !exported.has(name) {
				t.Errorf("%s: %s is not a metric the worker exports (known: %s)", f, name, exported)
			}
		}
	}
}

// metricSet is the metric families the worker exports, with their types
// (client_model's names: COUNTER, GAUGE, HISTOGRAM, ...; UNTYPED where only
// parsed). Histograms are referred to by _bucket, _sum and _count.
type metricSet map[string]string

func (s metricSet) has(name string) bool {
	if _, ok := s[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && s[base] == "HISTOGRAM" {
			return true
		}
	}
	return false
}

func (s metricSet) String() string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// exportedMetrics returns the eddy_ metrics the worker defines: the names
// given to prometheus.NewDesc and to the *Opts{Name: ...} of client_golang
// in the worker's non-test sources (read with go/parser, so comments and
// strings elsewhere do not count). A monitor's live /metrics, with a
// partition and an agent in it, must agree: every family it exports must
// be among the parsed names, which catches a definition the parser missed;
// it also tells which of them are histograms.
func exportedMetrics(t *testing.T) metricSet {
	t.Helper()
	set := metricSet{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("../worker", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
					addName(set, n.Args[0], "UNTYPED")
				}
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				typ, ok := optsTypes[sel.Sel.Name]
				if !ok {
					return true
				}
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
							addName(set, kv.Value, typ)
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("reading the worker's metric definitions: %v", err)
	}

	m := monitor.New("app", "test", true)
	m.Partition("count", "words", 0)
	m.Agent("count")
	m.KafkaError("ERR__TRANSPORT") // a vector: exported once it has a child
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "eddy_") {
			continue
		}
		live++
		if _, ok := set[name]; !ok {
			t.Fatalf("/metrics has %s, which the parse of worker/ did not find: teach exportedMetrics its definition", name)
		}
		set[name] = f.GetType().String()
	}
	if live < 20 {
		t.Fatalf("a monitor exported only %d eddy_ families, want the full set", live)
	}
	return set
}

// optsTypes are client_golang's option structs with a Name field.
var optsTypes = map[string]string{"GaugeOpts": "GAUGE", "CounterOpts": "COUNTER",
	"HistogramOpts": "HISTOGRAM", "SummaryOpts": "SUMMARY"}

func addName(set metricSet, e ast.Expr, typ string) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return
	}
	name, err := strconv.Unquote(lit.Value)
	if err == nil && strings.HasPrefix(name, "eddy_") {
		set[name] = typ
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
