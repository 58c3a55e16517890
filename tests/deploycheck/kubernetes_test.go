package deploycheck

// deploy/kubernetes, built as `kubectl apply -k` builds it (kustomize's
// krusty, on an in-memory copy of the directory), then every resource
// decoded strictly into the Kubernetes API's own Go types (unknown or
// duplicate fields fail, as `kubectl apply --validate=strict` would), the
// pod template held to the Pod Security Standard by the admission
// controller's own library, and every name, port, variable and duration
// compared with the binary. KEDA's ScaledObject is decoded strictly into the
// fields its documentation lists.

import (
	"bytes"
	"encoding/json"
	"fmt"
	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/bccstop/bccstop/internal/bcc"
)

const kubeDir = "deploy/kubernetes"

func TestKubernetes(t *testing.T) {
	report(t, checkKubernetes(t, theRepo))
}

// manifests is what the kustomization applies, decoded.
type manifests struct {
	kustomization kustomize.Kustomization
	namespaces    []*corev1.Namespace
	deployments   []*appsv1.Deployment
	configMaps    []*corev1.ConfigMap
	accounts      []*corev1.ServiceAccount
	services      []*corev1.Service
	budgets       []*policyv1.PodDisruptionBudget
	scaledObjects []*scaledObject
	// secretExamples are the Secrets of *example* files (not applied),
	// by name: the credentials the pods mount.
	secretExamples map[string]*corev1.Secret

	prometheusRules []*prometheusRule // checked in alerts_test.go
}

// strictDecoder decodes the built-in kinds the base uses into their API
// types, failing on unknown and duplicate fields.
func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// loadKubernetes builds the kustomization from an in-memory copy of the
// directory (with r's edits) and decodes what it applies.
func loadKubernetes(r repo, ps *problems) (*manifests, bool) {
	const dir = kubeDir
	entries, err := os.ReadDir(r.abs(dir))
	if err != nil {
		ps.add("%s: %v", dir, err)
		return nil, false
	}
	fs := filesys.MakeFsInMemory()
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := r.read(dir + "/" + e.Name())
		if err != nil {
			ps.add("%s/%s: %v", dir, e.Name(), err)
			return nil, false
		}
		files[e.Name()] = data
		if err := fs.WriteFile("/"+dir+"/"+e.Name(), data); err != nil {
			panic(err)
		}
	}
	m := &manifests{}
	if err := yaml.UnmarshalStrict(files["kustomization.yaml"], &m.kustomization); err != nil {
		ps.add("%s/kustomization.yaml: %v", dir, err)
		return nil, false
	}
	built, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/"+dir)
	if err != nil {
		ps.add("%s: kustomize build: %v", dir, err)
		return nil, false
	}
	decoder := strictDecoder()
	for _, res := range built.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			ps.add("%s: %s: %v", dir, res.CurId(), err)
			continue
		}
		where := fmt.Sprintf("%s: %s %s", dir, res.GetKind(), res.GetName())
		if gvk := res.GetGvk(); gvk.Group == "keda.sh" && gvk.Kind == "ScaledObject" {
			var so scaledObject
			if gvk.Version != "v1alpha1" {
				ps.add("%s: apiVersion %s; KEDA serves ScaledObject as keda.sh/v1alpha1", where, gvk.ApiVersion())
			} else if err := yaml.UnmarshalStrict(y, &so); err != nil {
				ps.add("%s: %v", where, err)
			} else {
				m.scaledObjects = append(m.scaledObjects, &so)
			}
			continue
		}
		if gvk := res.GetGvk(); gvk.Group == "monitoring.coreos.com" && gvk.Kind == "PrometheusRule" {
			if pr, err := decodePrometheusRule(y); err != nil {
				ps.add("%s: %v", where, err)
			} else {
				m.prometheusRules = append(m.prometheusRules, pr)
			}
			continue
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			ps.add("%s: %s is not checked by tests/deploycheck; add its API type to strictDecoder", where, res.GetGvk())
			continue
		} else if err != nil {
			ps.add("%s: %v", where, err)
			continue
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *corev1.ServiceAccount:
			m.accounts = append(m.accounts, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *policyv1.PodDisruptionBudget:
			m.budgets = append(m.budgets, o)
		default:
			ps.add("%s: %s is applied but not checked by tests/deploycheck", where, res.GetGvk())
		}
	}

	// Every manifest in the directory is applied, except examples.
	listed := map[string]bool{}
	for _, res := range m.kustomization.Resources {
		listed[path.Clean(res)] = true
	}
	for _, name := range keys(files) {
		if name == "kustomization.yaml" || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		example := strings.Contains(name, "example")
		if !listed[name] && !example {
			ps.add("%s/%s is not listed in kustomization.yaml's resources (name it *example* if it is meant to stay out)", dir, name)
		}
		if listed[name] && example {
			ps.add("%s/%s is an example but kustomization.yaml applies it", dir, name)
		}
		if !example {
			continue
		}
		obj, _, err := decoder.Decode(files[name], nil, nil)
		if err != nil {
			ps.add("%s/%s: %v", dir, name, err)
		} else if s, ok := obj.(*corev1.Secret); ok {
			if m.secretExamples == nil {
				m.secretExamples = map[string]*corev1.Secret{}
			}
			m.secretExamples[s.Name] = s
		}
	}
	return m, true
}

func checkKubernetes(t *testing.T, r repo) problems {
	const dir = kubeDir
	var ps problems
	m, ok := loadKubernetes(r, &ps)
	if !ok {
		return ps
	}
	if m.kustomization.Kind != kustomize.KustomizationKind || m.kustomization.APIVersion != kustomize.KustomizationVersion {
		ps.add("%s/kustomization.yaml: kind %q, apiVersion %q; want a %s %s", dir, m.kustomization.Kind, m.kustomization.APIVersion, kustomize.KustomizationVersion, kustomize.KustomizationKind)
	}
	if m.kustomization.Namespace == "" {
		ps.add("%s/kustomization.yaml: no namespace; the base would land in whatever namespace kubectl defaults to", dir)
	}
	for kind, n := range map[string]int{
		"Namespace": len(m.namespaces), "Deployment": len(m.deployments), "ConfigMap": len(m.configMaps),
		"ServiceAccount": len(m.accounts), "ScaledObject": len(m.scaledObjects), "PodDisruptionBudget": len(m.budgets),
	} {
		if n != 1 {
			ps.add("%s: want exactly one %s applied, found %d", dir, kind, n)
		}
	}
	if len(m.secretExamples) == 0 {
		ps.add("%s: no Secret example (secret.example.yaml) shows the credentials the pods mount", dir)
	}
	if len(ps) > 0 {
		return ps
	}
	dep, cm, sa, so, pdb, ns := m.deployments[0], m.configMaps[0], m.accounts[0], m.scaledObjects[0], m.budgets[0], m.namespaces[0]

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		ps.add("%s: the Deployment has %d containers; want the worker alone", dir, len(pod.Containers))
		return ps
	}
	c := pod.Containers[0]
	podLabels := labels.Set(dep.Spec.Template.Labels)
	selects(&ps, dir, "the Deployment's selector", dep.Spec.Selector, podLabels)
	selects(&ps, dir, "the PodDisruptionBudget", pdb.Spec.Selector, podLabels)
	if pod.ServiceAccountName != sa.Name {
		ps.add("%s: the pods run as service account %q, but the one defined is %q", dir, pod.ServiceAccountName, sa.Name)
	}

	// Command line and environment.
	if len(c.Command) > 0 {
		ps.add("%s: the container sets command %q, replacing the image's /bccstop entrypoint; use args", dir, c.Command)
	}
	if p := commandProblem(t, c.Args); p != "" {
		ps.add("%s: container args %q: %s", dir, c.Args, p)
	}
	if len(c.Args) == 0 || c.Args[0] != "worker" {
		ps.add("%s: the container runs %q, not `worker`", dir, c.Args)
	}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Name:
			for _, name := range keys(cm.Data) {
				if p := envProblem(name); p != "" {
					ps.add("%s: ConfigMap %s sets %s: %s", dir, cm.Name, name, p)
				}
				env[name] = cm.Data[name]
			}
		case ef.ConfigMapRef != nil:
			ps.add("%s: envFrom names ConfigMap %q, which the base does not define (it defines %q)", dir, ef.ConfigMapRef.Name, cm.Name)
		case ef.SecretRef != nil:
			ps.add("%s: envFrom puts Secret %q into the environment; mount credentials as files and use the *_FILE variables", dir, ef.SecretRef.Name)
		}
	}
	files := map[string]string{} // _FILE variable → mounted path
	for _, e := range c.Env {
		if p := envProblem(e.Name); p != "" {
			ps.add("%s: the container sets %s: %s", dir, e.Name, p)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ps.add("%s: %s comes from a Secret as an environment value; mount it as a file and use %s_FILE", dir, e.Name, strings.TrimSuffix(e.Name, "_FILE"))
		case e.ValueFrom != nil:
			env[e.Name] = "from-the-pod" // downward API
		default:
			env[e.Name] = e.Value
		}
		if strings.HasSuffix(e.Name, "_FILE") {
			files[e.Name] = e.Value
		}
	}
	for _, name := range []string{"BCE_ACCESS_KEY_ID", "BCE_SECRET_ACCESS_KEY"} {
		if _, ok := files[name+"_FILE"]; !ok {
			ps.add("%s: the container does not set %s_FILE; credentials come from the mounted Secret", dir, name)
		}
	}
	// The worker's NATS identity is a file from a Secret too: an nkey seed
	// or a creds file, never a password in the environment.
	switch nkey, creds := env["NATS_NKEY"], env["NATS_CREDS"]; {
	case nkey != "":
		files["NATS_NKEY"] = nkey
	case creds != "":
		files["NATS_CREDS"] = creds
	default:
		ps.add("%s: the worker has no NATS identity (NATS_NKEY or NATS_CREDS, a file mounted from a Secret); the NATS server lets no one in without one", dir)
	}
	for _, name := range []string{"NATS_PASSWORD", "NATS_TOKEN", "NATS_USER"} {
		if env[name] != "" {
			ps.add("%s: %s is set in the environment; use an nkey or creds file mounted from a Secret", dir, name)
		}
	}
	for _, name := range keys(files) {
		if p := secretFileProblem(c, pod, m.secretExamples, files[name]); p != "" {
			ps.add("%s: %s=%s: %s", dir, name, files[name], p)
		}
	}
	cfg, err := loadWorker(t, env, files)
	if err != nil {
		ps.add("%s: the ConfigMap and container environment do not start a worker: %v", dir, err)
		return ps
	}
	if p := listenProblem(cfg.HTTPAddr); p != "" {
		ps.add("%s: %s", dir, p)
	}
	if u, err := bcc.ParseEndpoint(cfg.Endpoint); err != nil || u.Scheme != "https" {
		ps.add("%s: BCC_ENDPOINT %q must be an https:// Baidu endpoint in a cluster", dir, cfg.Endpoint)
	}

	// Ports and probes follow BCCSTOP_HTTP_ADDR.
	httpPort := port(cfg.HTTPAddr)
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(int(p.ContainerPort))
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return strconv.Itoa(int(p.ContainerPort)) == httpPort }) {
		ps.add("%s: no containerPort is %s, the port of BCCSTOP_HTTP_ADDR %q", dir, httpPort, cfg.HTTPAddr)
	}
	resolve := func(p intstr.IntOrString) string {
		if p.Type == intstr.String {
			return portNames[p.StrVal]
		}
		return strconv.Itoa(int(p.IntVal))
	}
	for _, probe := range []struct {
		what, want string
		p          *corev1.Probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		switch {
		case probe.p == nil || probe.p.HTTPGet == nil:
			ps.add("%s: the container has no %s with httpGet %s", dir, probe.what, probe.want)
		case probe.p.HTTPGet.Path != probe.want:
			ps.add("%s: %s asks %s; want %s (/healthz answers while the process lives, /readyz only while it consumes)", dir, probe.what, probe.p.HTTPGet.Path, probe.want)
		case resolve(probe.p.HTTPGet.Port) != httpPort:
			ps.add("%s: %s asks port %s (%s), but BCCSTOP_HTTP_ADDR is %q", dir, probe.what, probe.p.HTTPGet.Port.String(), resolve(probe.p.HTTPGet.Port), cfg.HTTPAddr)
		}
	}
	for _, svc := range m.services {
		if len(svc.Spec.Selector) == 0 {
			ps.add("%s: Service %s selects nothing (empty selector)", dir, svc.Name)
		}
		selects(&ps, dir, "Service "+svc.Name, metav1.SetAsLabelSelector(svc.Spec.Selector), podLabels)
		for _, sp := range svc.Spec.Ports {
			if sp.TargetPort.IntValue() == 0 && sp.TargetPort.Type == intstr.Int {
				sp.TargetPort = intstr.FromInt32(sp.Port) // the API server's default
			}
			if resolve(sp.TargetPort) != httpPort {
				ps.add("%s: Service %s sends port %d to %s, not to the worker's port %s", dir, svc.Name, sp.Port, sp.TargetPort.String(), httpPort)
			}
		}
	}

	// Shutdown: the kubelet must wait for the drain.
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second <= cfg.ShutdownTimeout {
		ps.add("%s: terminationGracePeriodSeconds (%d) must be more than BCCSTOP_SHUTDOWN_TIMEOUT (%s), or pods are killed while commands are in flight", dir, grace, cfg.ShutdownTimeout)
	}

	// Hardening: the admission controller's own verdict for the level the
	// namespace enforces (restricted), then what it leaves to us.
	level := ns.Labels[psaapi.EnforceLevelLabel]
	if level != string(psaapi.LevelRestricted) {
		ps.add("%s: Namespace %s enforces Pod Security level %q; the workers need no privileges, so label it %s=restricted", dir, ns.Name, level, psaapi.EnforceLevelLabel)
	}
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	if v := psapolicy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &dep.Spec.Template.ObjectMeta, &pod)); !v.Allowed {
		ps.add("%s: the pod template breaks the Pod Security Standard \"restricted\": %s (%s)", dir, v.ForbiddenReason(), strings.Join(v.ForbiddenDetails, "; "))
	}
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil || psc == nil {
		ps.add("%s: both the pod and the container need a securityContext", dir)
		return ps
	}
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		ps.add("%s: runAsNonRoot is not true", dir)
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		ps.add("%s: runAsUser is 0 (root)", dir)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		ps.add("%s: readOnlyRootFilesystem is not true", dir)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		ps.add("%s: allowPrivilegeEscalation is not false", dir)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		ps.add("%s: capabilities must drop ALL and add none", dir)
	}
	runtimeDefault := func(p *corev1.SeccompProfile) bool {
		return p != nil && p.Type == corev1.SeccompProfileTypeRuntimeDefault
	}
	if !runtimeDefault(psc.SeccompProfile) && !runtimeDefault(sc.SeccompProfile) {
		ps.add("%s: seccompProfile is not RuntimeDefault", dir)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			ps.add("%s: no %s request", dir, res)
		}
	}
	if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		ps.add("%s: no memory limit", dir)
	} else if req, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && req.Cmp(limit) > 0 {
		ps.add("%s: the memory request %s is above the limit %s", dir, req.String(), limit.String())
	}
	if len(pod.TopologySpreadConstraints) == 0 && (pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil) {
		ps.add("%s: nothing spreads the workers over nodes (topologySpreadConstraints or podAntiAffinity)", dir)
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		selects(&ps, dir, "topology spread constraint "+tsc.TopologyKey, tsc.LabelSelector, podLabels)
	}
	if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		ps.add("%s: the PodDisruptionBudget sets neither minAvailable nor maxUnavailable", dir)
	}

	checkScaledObject(&ps, dir, so, dep, cfg.CommandsStream, cfg.Consumer)

	// A 3-node JetStream cluster keeps three copies of the streams and the ledger.
	if cfg.Replicas != 3 {
		ps.add("%s: BCCSTOP_REPLICAS is %d; the base targets a 3-node JetStream cluster, so 3", dir, cfg.Replicas)
	}
	return ps
}

// selects checks that a non-empty selector matches the worker pods'
// labels, with the API's own selector semantics.
func selects(ps *problems, dir, what string, sel *metav1.LabelSelector, pod labels.Set) {
	if sel == nil || len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		ps.add("%s: %s selects nothing (empty selector)", dir, what)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		ps.add("%s: %s: %v", dir, what, err)
	} else if !s.Matches(pod) {
		ps.add("%s: %s selects %s, which the worker pods do not carry (they have %s)", dir, what, s, pod)
	}
}

// secretFileProblem checks that file is a key of one of the example
// Secrets, mounted read-only from that Secret into the container.
func secretFileProblem(c corev1.Container, pod corev1.PodSpec, secrets map[string]*corev1.Secret, file string) string {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			return fmt.Sprintf("volume %s is not mounted readOnly", m.Name)
		}
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			return fmt.Sprintf("volume %s is mounted but not defined", m.Name)
		}
		v := pod.Volumes[i]
		if v.Secret == nil {
			return fmt.Sprintf("volume %s is not a Secret", v.Name)
		}
		secret := secrets[v.Secret.SecretName]
		if secret == nil {
			return fmt.Sprintf("volume %s mounts Secret %q, which no example (*example*.yaml) shows", v.Name, v.Secret.SecretName)
		}
		key := rel
		if len(v.Secret.Items) > 0 {
			j := slices.IndexFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == rel })
			if j < 0 {
				return fmt.Sprintf("Secret volume %s has no item with path %s", v.Name, rel)
			}
			key = v.Secret.Items[j].Key
		}
		_, inString := secret.StringData[key]
		_, inData := secret.Data[key]
		if !inString && !inData {
			return fmt.Sprintf("the example Secret %s has no key %q", secret.Name, key)
		}
		return ""
	}
	return "no volume is mounted there"
}

func isTrue(b *bool) bool { return b != nil && *b }

// scaledObject is KEDA's ScaledObject (keda.sh/v1alpha1), with the fields
// of KEDA's ScaledObject specification. KEDA's own Go module links the
// client library of every one of its scalers, so its types are not imported:
// strict decoding into this struct catches a misspelt or misplaced field
// all the same.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Fallback              *struct {
			FailureThreshold int32  `json:"failureThreshold"`
			Replicas         int32  `json:"replicas"`
			Behavior         string `json:"behavior,omitempty"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			ScalingModifiers *struct {
				Formula          string `json:"formula,omitempty"`
				Target           string `json:"target,omitempty"`
				ActivationTarget string `json:"activationTarget,omitempty"`
				MetricType       string `json:"metricType,omitempty"`
			} `json:"scalingModifiers,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			MetricType        string            `json:"metricType,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// natsJetStreamMetadata is the metadata of KEDA's nats-jetstream scaler,
// every key its documentation lists (keda.sh, Scalers, NATS JetStream).
type natsJetStreamMetadata struct {
	NatsServerMonitoringEndpoint string `json:"natsServerMonitoringEndpoint"`
	Account                      string `json:"account"`
	Stream                       string `json:"stream"`
	Consumer                     string `json:"consumer"`
	LagThreshold                 string `json:"lagThreshold"`
	ActivationLagThreshold       string `json:"activationLagThreshold,omitempty"`
	UseHTTPS                     string `json:"useHttps,omitempty"`
}

// checkScaledObject: KEDA scales the Deployment on the lag of the stream
// and consumer the workers use.
func checkScaledObject(ps *problems, dir string, so *scaledObject, dep *appsv1.Deployment, stream, consumer string) {
	if ref := so.Spec.ScaleTargetRef; ref.Name != dep.Name || ref.Kind != "" && ref.Kind != "Deployment" {
		ps.add("%s: the ScaledObject scales %s %q, not the Deployment %q", dir, ref.Kind, ref.Name, dep.Name)
	}
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil {
		ps.add("%s: the ScaledObject needs minReplicaCount and maxReplicaCount", dir)
	} else if lo, hi := *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount; lo < 1 || lo > hi || replicas < lo || replicas > hi {
		ps.add("%s: the ScaledObject scales %d…%d, the Deployment asks %d replicas; want 1 ≤ min ≤ replicas ≤ max", dir, lo, hi, replicas)
	}
	var triggers int
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "nats-jetstream" {
			continue
		}
		triggers++
		raw, _ := json.Marshal(tr.Metadata)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var md natsJetStreamMetadata
		if err := dec.Decode(&md); err != nil {
			ps.add("%s: the nats-jetstream trigger's metadata: %v; the scaler reads natsServerMonitoringEndpoint, account, stream, consumer, lagThreshold, activationLagThreshold and useHttps", dir, err)
			continue
		}
		if md.Stream != stream {
			ps.add("%s: the KEDA trigger watches stream %q, but the workers consume from BCCSTOP_COMMANDS_STREAM=%q", dir, md.Stream, stream)
		}
		if md.Consumer != consumer {
			ps.add("%s: the KEDA trigger watches consumer %q, but the workers share BCCSTOP_CONSUMER=%q", dir, md.Consumer, consumer)
		}
		if md.Account != natsauth.Account {
			ps.add("%s: the KEDA trigger reads account %q, but the shipped NATS configuration puts bccstop's users in %q", dir, md.Account, natsauth.Account)
		}
		if _, _, err := net.SplitHostPort(md.NatsServerMonitoringEndpoint); err != nil {
			ps.add("%s: natsServerMonitoringEndpoint %q is not host:port of NATS monitoring", dir, md.NatsServerMonitoringEndpoint)
		}
		if n, err := strconv.Atoi(md.LagThreshold); err != nil || n < 1 {
			ps.add("%s: lagThreshold %q is not a positive whole number", dir, md.LagThreshold)
		}
		if md.UseHTTPS != "" && md.UseHTTPS != "true" && md.UseHTTPS != "false" {
			ps.add("%s: useHttps %q is neither true nor false", dir, md.UseHTTPS)
		}
	}
	if triggers != 1 {
		ps.add("%s: want one nats-jetstream trigger, found %d", dir, triggers)
	}
}
