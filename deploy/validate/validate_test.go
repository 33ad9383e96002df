package validate

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// deployDir is deploy/, this module's parent.
const deployDir = ".."

// baseDir is the kustomize base.
var baseDir = filepath.Join(deployDir, "base")

// manifestFiles are every YAML file under deploy/ (the base, the overlays and
// their patches), this module's own directory and the image module excluded.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(deployDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "validate" || d.Name() == "image") {
			return filepath.SkipDir
		}
		// Prometheus rule files (and their promtool unit test) are not
		// Kubernetes objects: .ci/run checks them with promtool.
		if !d.IsDir() && strings.HasPrefix(d.Name(), "probe-alerts") {
			return nil
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found only %d manifests under deploy/: %v", len(files), files)
	}
	return files
}

// TestEveryManifestDecodesStrictly: every document of every YAML file in
// deploy/ — overlay patches included — decodes strictly into its k8s.io/api
// (or kustomize) type.
func TestEveryManifestDecodesStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeAll(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no documents", f)
		}
	}
}

// TestStrictDecodingRejects: the decoder itself catches what a lax parse
// lets through.
func TestStrictDecodingRejects(t *testing.T) {
	bad := map[string]string{
		"unknown field": "apiVersion: batch/v1\nkind: Job\nspec:\n  completion: 4\n",
		"wrong type":    "apiVersion: batch/v1\nkind: Job\nspec:\n  completions: \"4\"\n",
		"duplicate key": "apiVersion: batch/v1\nkind: Job\nspec:\n  completions: 4\n  completions: 5\n",
		"nested field":  "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: a\n          imagePullPolicy: Always\n          arg: [x]\n",
		"number data":   "apiVersion: v1\nkind: ConfigMap\ndata:\n  SHARDS: 4\n",
		"case mismatch": "apiVersion: batch/v1\nkind: Job\nspec:\n  Completions: 4\n",
		"bool as text":  "apiVersion: batch/v1\nkind: Job\nspec:\n  suspend: \"yes\"\n",
		"unknown kind":  "apiVersion: batch/v1\nkind: Jobs\n",
		"no kind":       "metadata:\n  name: x\n",
		"bad kustomize": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a.yaml]\n",
	}
	for name, doc := range bad {
		if _, err := DecodeAll([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		}
	}
	if objs, err := DecodeAll([]byte("# comment\n---\napiVersion: batch/v1\nkind: Job\nspec:\n  completions: 4\n---\n")); err != nil || len(objs) != 1 {
		t.Errorf("a good Job: %v objects, error %v", len(objs), err)
	}
}

// build runs kustomize on dir and decodes its output strictly.
func build(t *testing.T, dir string) []any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeAll(out)
	if err != nil {
		t.Fatalf("kustomize build %s: output does not decode strictly: %v\n%s", dir, err, out)
	}
	return objs
}

func TestBase(t *testing.T) {
	r := checkRun(t, build(t, baseDir))
	if r == nil {
		return
	}
	if got := r.image; got != "eventswarm/eventswarm:dev" {
		t.Errorf("base image %q, want eventswarm/eventswarm:dev (what deploy/image and the Dockerfile build)", got)
	}
	if r.shards != 4 {
		t.Errorf("base: %d shards, want 4", r.shards)
	}
}

// TestOverlays builds every overlay under deploy/overlays and checks it as
// a real run (a real run ID and start time); the example's values too.
func TestOverlays(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join(deployDir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		t.Run(d.Name(), func(t *testing.T) {
			r := checkRun(t, build(t, filepath.Join(deployDir, "overlays", d.Name())))
			if r == nil {
				return
			}
			// An overlay is for a real run: a real run ID and start time.
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(r.env["RUN_ID"]) || strings.Trim(r.env["RUN_ID"], "0") == "" {
				t.Errorf("RUN_ID %q is not 32 hex digits (not all zero)", r.env["RUN_ID"])
			}
			if _, err := time.Parse(time.RFC3339, r.env["START_AT"]); err != nil {
				t.Errorf("START_AT %q: %v", r.env["START_AT"], err)
			}
			if d.Name() != "example" {
				return
			}
			if r.shards != 8 {
				t.Errorf("%d shards, want 8", r.shards)
			}
			if r.image != "registry.example.com/eventswarm:v0.1.0" {
				t.Errorf("image %q", r.image)
			}
			if r.env["TARGET"] != "mqtt://broker.example.svc:1883" {
				t.Errorf("target %q", r.env["TARGET"])
			}
		})
	}
	if n == 0 {
		t.Fatal("no overlays")
	}
}

// run is what checkRun found.
type run struct {
	shards int
	image  string
	env    map[string]string // the ConfigMap
}

// checkRun asserts what strict decoding cannot see, on one built run (the
// base or an overlay): the shards' Indexed Job, the collector's Job and
// Service and their ConfigMap agree with each other and with swarm's shard
// contract.
func checkRun(t *testing.T, objs []any) *run {
	t.Helper()
	var (
		cms   []*corev1.ConfigMap
		svcs  []*corev1.Service
		jobs  = map[string]*batchv1.Job{}
		other []any
	)
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.ConfigMap:
			cms = append(cms, v)
		case *corev1.Service:
			svcs = append(svcs, v)
		case *batchv1.Job:
			jobs[v.Name] = v
		default:
			other = append(other, v)
		}
	}
	if len(cms) != 1 || cms[0].Name != "eventswarm-run" {
		t.Fatalf("want one ConfigMap eventswarm-run, got %d", len(cms))
	}
	if len(svcs) != 1 || len(jobs) != 2 || len(other) != 0 {
		t.Fatalf("want one Service and two Jobs and nothing else; got %d Services, Jobs %v, %d others", len(svcs), len(jobs), len(other))
	}
	env := cms[0].Data
	for _, k := range []string{"SHARDS", "RUN_ID", "START_AT", "TARGET"} {
		if env[k] == "" {
			t.Errorf("ConfigMap: %s is empty", k)
		}
	}
	shards, err := strconv.Atoi(env["SHARDS"])
	if err != nil || shards < 1 {
		t.Fatalf("ConfigMap SHARDS %q: want a count >= 1", env["SHARDS"])
	}
	r := &run{shards: shards, env: env}

	sw, mg := jobs["eventswarm-swarm"], jobs["eventswarm-merge"]
	if sw == nil || mg == nil {
		t.Fatalf("want Jobs eventswarm-swarm and eventswarm-merge, got %v", slices.Collect(maps.Keys(jobs)))
	}
	svc := svcs[0]

	// The shards.
	s := sw.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("shards: completionMode must be Indexed (JOB_COMPLETION_INDEX is --shard)")
	}
	if s.Completions == nil || int(*s.Completions) != shards || s.Parallelism == nil || int(*s.Parallelism) != shards {
		t.Errorf("shards: completions %v and parallelism %v must both equal SHARDS %d (every shard runs at START_AT)", deref(s.Completions), deref(s.Parallelism), shards)
	}
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex != 0 {
		t.Errorf("shards: backoffLimitPerIndex must be 0: a rerun shard starts late")
	}
	checkFailurePolicy(t, "shards", sw, true)
	c := onlyContainer(t, "shards", sw)
	if c == nil {
		return nil
	}
	r.image = c.Image
	checkContainer(t, "shards", c)

	// Every shard's arguments, as Kubernetes expands them for index i.
	var runIDs, startAts, shardFiles []string
	for i := range shards {
		vars := podEnv(t, "shards", c, env)
		vars["JOB_COMPLETION_INDEX"] = strconv.Itoa(i)
		flags := parseArgs(t, "shards", expand(t, "shards", c.Args, vars))
		if _, ok := flags["shard"]; ok {
			t.Errorf("shards: --shard must not be given: it defaults to JOB_COMPLETION_INDEX")
		}
		if flags["shards"] != env["SHARDS"] {
			t.Errorf("shards: --shards %q, want $(SHARDS) = %q", flags["shards"], env["SHARDS"])
		}
		if flags["target"] != env["TARGET"] {
			t.Errorf("shards: --target %q, want $(TARGET)", flags["target"])
		}
		if flags["verdict-exit"] != "false" {
			t.Errorf("shards: --verdict-exit=false is needed: a shard's own verdict (1, 3) would fail its index")
		}
		if i == 0 {
			swarmParses(t, "shards", expand(t, "shards", c.Args, vars))
		}
		runIDs = append(runIDs, flags["run-id"])
		startAts = append(startAts, flags["start-at"])
		shardFiles = append(shardFiles, flags["shard-file"])
	}
	if slices.Compact(slices.Clone(runIDs))[0] != env["RUN_ID"] || len(slices.Compact(slices.Clone(runIDs))) != 1 {
		t.Errorf("shards: every shard must get the ConfigMap's RUN_ID; got %v", runIDs)
	}
	if slices.Compact(slices.Clone(startAts))[0] != env["START_AT"] || len(slices.Compact(slices.Clone(startAts))) != 1 {
		t.Errorf("shards: every shard must get the ConfigMap's START_AT; got %v", startAts)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(shardFiles)))) != shards {
		t.Errorf("shards: each shard needs its own --shard-file; got %v", shardFiles)
	}

	// Where the shards send their files: the Service in front of the collector.
	u, err := url.Parse(shardFiles[0])
	if err != nil || u.Scheme != "http" {
		t.Fatalf("shards: --shard-file %q: want http://eventswarm-merge:PORT/… (the collector)", shardFiles[0])
	}
	host, port, _ := net.SplitHostPort(u.Host)
	if host != svc.Name {
		t.Errorf("shards: --shard-file host %q, want the Service %q", host, svc.Name)
	}
	var target *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if strconv.Itoa(int(svc.Spec.Ports[i].Port)) == port {
			target = &svc.Spec.Ports[i]
		}
	}
	if target == nil {
		t.Fatalf("shards: --shard-file port %s is not a port of Service %s", port, svc.Name)
	}

	// The collector.
	m := mg.Spec
	if m.CompletionMode != nil && *m.CompletionMode != batchv1.NonIndexedCompletion {
		t.Errorf("merge: one pod, not Indexed")
	}
	if m.BackoffLimit == nil || *m.BackoffLimit != 0 {
		t.Errorf("merge: backoffLimit must be 0: a new collector would wait for files already sent")
	}
	checkFailurePolicy(t, "merge", mg, false)
	if deref(m.ActiveDeadlineSeconds) <= deref(s.ActiveDeadlineSeconds) {
		t.Errorf("merge: activeDeadlineSeconds %d must exceed the shards' %d", deref(m.ActiveDeadlineSeconds), deref(s.ActiveDeadlineSeconds))
	}
	mc := onlyContainer(t, "merge", mg)
	if mc == nil {
		return nil
	}
	checkContainer(t, "merge", mc)
	if mc.Image != c.Image {
		t.Errorf("merge: image %q, want the shards' %q", mc.Image, c.Image)
	}
	if len(mc.Args) == 0 || mc.Args[0] != "merge" {
		t.Fatalf("merge: args must start with merge (the image's entrypoint is swarm), got %v", mc.Args)
	}
	mflags := parseArgs(t, "merge", expand(t, "merge", mc.Args[1:], podEnv(t, "merge", mc, env)))
	swarmParses(t, "merge", expand(t, "merge", mc.Args, podEnv(t, "merge", mc, env)))
	if mflags["shards"] != env["SHARDS"] || mflags["run-id"] != env["RUN_ID"] {
		t.Errorf("merge: --shards %q --run-id %q, want the ConfigMap's %q %q", mflags["shards"], mflags["run-id"], env["SHARDS"], env["RUN_ID"])
	}
	if d, err := time.ParseDuration(mflags["deadline"]); err != nil || d <= 0 || d.Seconds() >= float64(deref(m.ActiveDeadlineSeconds)) {
		t.Errorf("merge: --deadline %q must be a duration below activeDeadlineSeconds %d (so the missing shards are reported)", mflags["deadline"], deref(m.ActiveDeadlineSeconds))
	}
	_, lport, err := net.SplitHostPort(mflags["listen"])
	if err != nil {
		t.Fatalf("merge: --listen %q: %v", mflags["listen"], err)
	}
	if target.TargetPort.String() != lport && !hasNamedPort(mc, target.TargetPort.String(), lport) {
		t.Errorf("merge: Service targetPort %s does not reach --listen port %s", target.TargetPort.String(), lport)
	}
	// The Service selects the collector's pod and nothing else.
	if !matches(svc.Spec.Selector, mg.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the collector's pod (labels %v)", svc.Spec.Selector, mg.Spec.Template.Labels)
	}
	if len(svc.Spec.Selector) == 0 || matches(svc.Spec.Selector, sw.Spec.Template.Labels) {
		t.Errorf("Service selector %v must not select the shards' pods", svc.Spec.Selector)
	}
	return r
}

var (
	swarmOnce sync.Once
	swarmBin  string
	swarmErr  error
)

// swarmParses runs the real swarm (built from this repository) with args and
// --version: swarm parses every flag, by name and type, before it prints the
// version, so a misspelt flag or a bad value in a manifest fails here.
func swarmParses(t *testing.T, what string, args []string) {
	t.Helper()
	swarmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "eventswarm-validate-")
		if err != nil {
			swarmErr = err
			return
		}
		swarmBin = filepath.Join(dir, "swarm")
		cmd := exec.Command("go", "build", "-o", swarmBin, "./cmd/swarm")
		cmd.Dir = filepath.Join(deployDir, "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			swarmErr = fmt.Errorf("go build ./cmd/swarm: %v\n%s", err, out)
		}
	})
	if swarmErr != nil {
		t.Fatal(swarmErr)
	}
	out, err := exec.Command(swarmBin, append(slices.Clone(args), "--version")...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "swarm ") {
		t.Errorf("%s: swarm does not take the manifest's arguments %q: %v: %s", what, args, err, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if swarmBin != "" {
		os.RemoveAll(filepath.Dir(swarmBin))
	}
	os.Exit(code)
}

// checkFailurePolicy: a lost pod never silently doubles a shard or reruns
// the collector, and the policy is one the API server accepts.
func checkFailurePolicy(t *testing.T, what string, j *batchv1.Job, indexed bool) {
	t.Helper()
	s := j.Spec
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy must be Never (a restarted container reruns the shard late; podFailurePolicy requires it)", what)
	}
	if s.PodReplacementPolicy == nil || *s.PodReplacementPolicy != batchv1.Failed {
		t.Errorf("%s: podReplacementPolicy must be Failed: no replacement beside a terminating pod", what)
	}
	p := s.PodFailurePolicy
	if p == nil || len(p.Rules) == 0 {
		t.Errorf("%s: podFailurePolicy is missing", what)
		return
	}
	disruption := false
	for i, rule := range p.Rules {
		if (rule.OnExitCodes == nil) == (len(rule.OnPodConditions) == 0) {
			t.Errorf("%s: podFailurePolicy rule %d needs exactly one of onExitCodes and onPodConditions", what, i)
		}
		switch rule.Action {
		case batchv1.PodFailurePolicyActionFailIndex:
			if !indexed || s.BackoffLimitPerIndex == nil {
				t.Errorf("%s: rule %d: FailIndex needs backoffLimitPerIndex", what, i)
			}
		case batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionCount:
		case batchv1.PodFailurePolicyActionIgnore:
			// Ignore replaces the pod: a shard rerun late, a collector rerun empty.
			t.Errorf("%s: rule %d: Ignore reruns the pod", what, i)
		default:
			t.Errorf("%s: rule %d: unknown action %q", what, i, rule.Action)
		}
		if e := rule.OnExitCodes; e != nil {
			if e.ContainerName == nil || !slices.ContainsFunc(s.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == *e.ContainerName }) {
				t.Errorf("%s: rule %d: onExitCodes.containerName must name the container", what, i)
			}
			if len(e.Values) == 0 || !slices.IsSorted(e.Values) || len(slices.Compact(slices.Clone(e.Values))) != len(e.Values) {
				t.Errorf("%s: rule %d: exit codes must be a non-empty, ordered set", what, i)
			}
			switch e.Operator {
			case batchv1.PodFailurePolicyOnExitCodesOpIn:
				if slices.Contains(e.Values, 0) {
					t.Errorf("%s: rule %d: 0 cannot be In", what, i)
				}
			case batchv1.PodFailurePolicyOnExitCodesOpNotIn:
			default:
				t.Errorf("%s: rule %d: operator %q", what, i, e.Operator)
			}
		}
		for _, pc := range rule.OnPodConditions {
			if pc.Type == corev1.DisruptionTarget && pc.Status == corev1.ConditionTrue && rule.Action != batchv1.PodFailurePolicyActionCount {
				disruption = true
			}
		}
	}
	if !disruption {
		t.Errorf("%s: podFailurePolicy has no rule for DisruptionTarget (an evicted pod must not be rerun)", what)
	}
}

func onlyContainer(t *testing.T, what string, j *batchv1.Job) *corev1.Container {
	t.Helper()
	cs := j.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(j.Spec.Template.Spec.InitContainers) != 0 {
		t.Errorf("%s: want exactly one container, got %d (+%d init)", what, len(cs), len(j.Spec.Template.Spec.InitContainers))
		return nil
	}
	return &cs[0]
}

// checkContainer: the image's entrypoint runs directly (no shell: the image
// has none), as non-root, with resources set.
func checkContainer(t *testing.T, what string, c *corev1.Container) {
	t.Helper()
	if len(c.Command) != 0 {
		t.Errorf("%s: command %v: the image's entrypoint (/usr/local/bin/swarm) runs; there is no shell in the image", what, c.Command)
	}
	for _, a := range c.Args {
		if strings.Contains(a, "/bin/sh") || a == "-c" {
			t.Errorf("%s: args %v use a shell", what, c.Args)
		}
	}
	if c.Image == "" {
		t.Errorf("%s: no image", what)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("%s: resources must set requests.cpu, requests.memory and limits.memory, got %v", what, c.Resources)
	}
	if lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("%s: memory limit below its request", what)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: securityContext must forbid privilege escalation and keep the root filesystem read-only", what)
	}
	found := false
	for _, ef := range c.EnvFrom {
		found = found || (ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == "eventswarm-run")
	}
	if !found {
		t.Errorf("%s: envFrom must take the ConfigMap eventswarm-run", what)
	}
}

// podEnv is the container's environment: the ConfigMap (envFrom), then env,
// which may not override the run's identity.
func podEnv(t *testing.T, what string, c *corev1.Container, cm map[string]string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for k, v := range cm {
		vars[k] = v
	}
	for _, e := range c.Env {
		switch e.Name {
		case "RUN_ID", "START_AT", "SHARDS", "JOB_COMPLETION_INDEX":
			t.Errorf("%s: env must not set %s: every shard takes it from the ConfigMap (or Kubernetes)", what, e.Name)
		}
		vars[e.Name] = e.Value
	}
	return vars
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand does Kubernetes' $(VAR) expansion of args; an undefined reference
// (which Kubernetes leaves as is) is an error.
func expand(t *testing.T, what string, args []string, vars map[string]string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = varRef.ReplaceAllStringFunc(a, func(m string) string {
			if m == "$$" {
				return "$"
			}
			name := m[2 : len(m)-1]
			v, ok := vars[name]
			if !ok {
				t.Errorf("%s: arg %q refers to $(%s), which is not defined", what, a, name)
				return m
			}
			return v
		})
	}
	return out
}

// parseArgs reads --name=value arguments (the manifests' one form: a value
// can never be taken for a flag).
func parseArgs(t *testing.T, what string, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("%s: argument %q: write flags as --name=value", what, a)
			continue
		}
		if _, dup := flags[name]; dup {
			t.Errorf("%s: --%s given twice", what, name)
		}
		flags[name] = value
	}
	return flags
}

func hasNamedPort(c *corev1.Container, name, port string) bool {
	for _, p := range c.Ports {
		if p.Name == name && strconv.Itoa(int(p.ContainerPort)) == port {
			return true
		}
	}
	return false
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}
