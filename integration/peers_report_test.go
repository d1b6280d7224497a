package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// peerMeta is what a reader needs to reproduce BenchmarkPeers' figures.
type peerMeta struct {
	Date     string            `json:"date"`
	Machine  string            `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings map[string]string `json:"settings"`
}

// firstLine runs a command and returns the first line of its output, or
// "unknown".
func firstLine(dir string, args ...string) string {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func collectMeta(b *testing.B, root string, lines, faustLines int) peerMeta {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.+)`).FindStringSubmatch(string(data)); m != nil {
			cpu = m[1]
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kib)/(1<<20))
		}
	}
	_, rdk := kafka.LibraryVersion()
	ckg := "unknown"
	gomod, _ := os.ReadFile(filepath.Join(root, "go.mod"))
	if m := regexp.MustCompile(`confluent-kafka-go/v2 (v\S+)`).FindSubmatch(gomod); m != nil {
		ckg = string(m[1])
	}
	fetch, _ := os.ReadFile(filepath.Join(root, "scripts/kafka/fetch.sh"))
	broker := "unknown"
	if m := regexp.MustCompile(`KAFKA_VERSION=([0-9.]+)`).FindSubmatch(fetch); m != nil {
		broker = string(m[1])
	}
	pom, _ := os.ReadFile(filepath.Join(root, "bench/peers/kstreams/pom.xml"))
	ks := "unknown"
	if m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom); m != nil {
		ks = string(m[1])
	}
	faustPy := filepath.Join(root, "bench/peers/faust/.venv/bin/python")
	return peerMeta{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Machine: fmt.Sprintf("%d cores (%s)%s, %s/%s; broker, systems and the bench process share it", runtime.NumCPU(), cpu, mem, runtime.GOOS, runtime.GOARCH),
		Versions: map[string]string{
			"eddy":               firstLine(root, "git", "describe", "--always", "--dirty"),
			"go":                 runtime.Version(),
			"confluent-kafka-go": ckg + " (librdkafka " + rdk + ")",
			"kafka broker":       broker + " (KRaft, one node, scripts/kafka)",
			"kafka streams":      ks,
			"java":               firstLine(root, "java", "-version"),
			"faust-streaming":    firstLine(root, faustPy, "-c", "import faust, aiokafka; print(faust.__version__, '(aiokafka', aiokafka.__version__ + ')')"),
			"python":             firstLine(root, faustPy, "--version"),
		},
		Settings: map[string]string{
			"input":       fmt.Sprintf("%d keyless lines of 3-8 words (Zipf s=1.1 over 10,000 words), 8 partitions, written once; every system reads it with its own group, except faust: at its rate the whole input would take longer than the whole bench, so it reads its own topic with the first %d lines of the same corpus", lines, faustLines),
			"events/s":    "input lines / (time from ready to the output complete and correct, read by an independent consumer)",
			"latency":     "300 one-word marker lines written at 100/s after the input is done (each becomes part of the input of the next rows); time from the write to the marker's output being read",
			"peak RSS":    "VmHWM of every process of the system, read just before it stops (raw rows run inside the bench process: not measured)",
			"ready":       "Eddy: worker RUNNING, partitions assigned, agents connected (the worker paused meanwhile, then resumed); faust and Kafka Streams: the process prints READY (partitions assigned / state RUNNING)",
			"guarantees":  "all at-least-once with commits on; nothing is killed during the run",
			"CPU s (run)": "user+system CPU seconds of each process of the system and of the broker from ready to the output complete (the machine has 2 cores: at most 2 CPU s per second of run)",
		},
	}
}

// write puts RESULTS.md, results.json and results.png under bench/.
func (pb *peerBench) write() {
	b := pb.b
	var raw float64
	for _, r := range pb.rows {
		if r.Name == "raw-read" && r.OK {
			raw = r.EventsPerS
		}
	}
	for _, r := range pb.rows {
		if raw > 0 && r.OK {
			r.Ratio = r.EventsPerS / raw
		}
	}
	dir := filepath.Join(pb.root, "bench")
	js, err := json.MarshalIndent(struct {
		Meta peerMeta   `json:"meta"`
		Rows []*peerRow `json:"rows"`
	}{pb.meta, pb.rows}, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
	md := pb.markdown()
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md), 0o644); err != nil {
		b.Fatal(err)
	}
	fmt.Println(md)
	py := filepath.Join(pb.root, "bench/peers/faust/.venv/bin/python")
	if out, err := exec.Command(py, filepath.Join(dir, "chart.py"), filepath.Join(dir, "results.json"), filepath.Join(dir, "results.png")).CombinedOutput(); err != nil {
		b.Errorf("bench/chart.py: %v\n%s", err, out)
	}
}

func (pb *peerBench) markdown() string {
	var s strings.Builder
	m := pb.meta
	fmt.Fprintf(&s, "# Benchmark results\n\nWritten by `make bench` (BenchmarkPeers, integration/peers_bench_test.go) on %s.\n\n", m.Date)
	fmt.Fprintf(&s, "Machine: %s.\n\n", m.Machine)
	s.WriteString("| system | setup | events/s | words/s | ratio to raw-read | start-up s | p50 ms | p99 ms | peak RSS MiB | CPU s (run) | correct |\n")
	s.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range pb.rows {
		rss := "-"
		if r.RSSTotal > 0 {
			var parts []string
			for _, k := range sortedKeys(r.RSSMiB) {
				parts = append(parts, fmt.Sprintf("%s %.0f", k, r.RSSMiB[k]))
			}
			rss = fmt.Sprintf("%.0f (%s)", r.RSSTotal, strings.Join(parts, ", "))
		}
		cpu := "-"
		if len(r.CPUSeconds) > 0 {
			var parts []string
			for _, k := range sortedKeys(r.CPUSeconds) {
				parts = append(parts, fmt.Sprintf("%s %.1f", k, r.CPUSeconds[k]))
			}
			cpu = strings.Join(parts, ", ")
		}
		ok := "yes"
		if !r.OK {
			ok = "**NO**: " + r.Error
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, r.Setup,
			num(r.EventsPerS, "%.0f"), num(r.WordsPerS, "%.0f"), num(r.Ratio, "%.2f"), num(r.StartupS, "%.1f"),
			num(r.P50Ms, "%.1f"), num(r.P99Ms, "%.1f"), rss, cpu, ok)
	}
	s.WriteString("\n![events/s](results.png)\n\n## Versions\n\n")
	for _, k := range sortedKeys(m.Versions) {
		fmt.Fprintf(&s, "- %s: %s\n", k, m.Versions[k])
	}
	s.WriteString("\n## Settings\n\n")
	for _, k := range sortedKeys(m.Settings) {
		fmt.Fprintf(&s, "- %s: %s\n", k, m.Settings[k])
	}
	for _, r := range pb.rows {
		if r.Profile != "" {
			fmt.Fprintf(&s, "\n## Worker CPU profile during %s (10 s, `go tool pprof -top`)\n\n```\n%s```\n", r.Name, r.Profile)
		}
	}
	return s.String()
}

func num(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
