package deploycheck

// deploy/kubernetes/cli-pod.overrides.json makes `kubectl run` start the
// bccstop CLI in the workers' namespace, which enforces the Pod Security
// Standard "restricted": a plain `kubectl run` pod is refused there. The
// file is applied here, with the JSON Patch library kubectl uses, to the
// pod kubectl run generates, and the result is decoded strictly, held to
// the standard by the admission controller's own library, and checked
// against the base: the ConfigMap keys it reads, the Secret it mounts, and
// no selector of the base picking it up as a worker.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
)

const cliPodOverrides = kubeDir + "/cli-pod.overrides.json"

func TestCLIPod(t *testing.T) {
	report(t, checkCLIPod(t, theRepo))
}

// kubectlRunPod is the pod `kubectl run NAME -i --rm --restart=Never
// --image=IMAGE -- ARGS…` sends before its overrides (kubectl's
// RunOptions.createPod).
func kubectlRunPod(name, image string, args []string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"run": name}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:      name,
				Image:     image,
				Env:       []corev1.EnvVar{},
				Stdin:     true,
				StdinOnce: true,
				Args:      args,
			}},
			DNSPolicy:     corev1.DNSClusterFirst,
			RestartPolicy: corev1.RestartPolicyNever,
		},
	}
}

func checkCLIPod(t *testing.T, r repo) problems {
	const file = cliPodOverrides
	var ps problems
	m, ok := loadKubernetes(r, &ps)
	if !ok {
		return ps
	}
	if len(m.deployments) != 1 || len(m.configMaps) != 1 || len(m.namespaces) != 1 {
		return ps // TestKubernetes says what is missing
	}
	dep, cm, ns := m.deployments[0], m.configMaps[0], m.namespaces[0]
	raw, err := r.read(file)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		ps.add("%s is not a JSON Patch (kubectl run --override-type=json): %v", file, err)
		return ps
	}
	image := dep.Spec.Template.Spec.Containers[0].Image
	args := []string{"status", "--since", "1h"}
	generated, err := json.Marshal(kubectlRunPod("bccstop-cli-1", image, args))
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(generated)
	if err != nil {
		ps.add("%s does not apply to the pod kubectl run makes: %v", file, err)
		return ps
	}
	obj, _, err := strictDecoder().Decode(patched, nil, nil)
	if err != nil {
		ps.add("%s: the patched pod: %v", file, err)
		return ps
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		ps.add("%s: the patched object is a %T, not a Pod", file, obj)
		return ps
	}
	c := pod.Spec.Containers[0]

	// Admitted in the namespace, at the level it enforces.
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.Level(ns.Labels[psaapi.EnforceLevelLabel]), Version: psaapi.LatestVersion()}
	if level.Level == "" {
		level.Level = psaapi.LevelRestricted
	}
	if v := psapolicy.AggregateCheckResults(evaluator.EvaluatePod(level, &pod.ObjectMeta, &pod.Spec)); !v.Allowed {
		ps.add("%s: namespace %s refuses the pod (Pod Security %q): %s (%s)", file, ns.Name, level.Level, v.ForbiddenReason(), strings.Join(v.ForbiddenDetails, "; "))
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		ps.add("%s: the pod mounts a service account token; the CLI calls no Kubernetes API", file)
	}

	// What kubectl run set is left as it is: the image's /bccstop runs the
	// arguments given.
	if len(c.Command) > 0 || c.Image != image || !slices.Equal(c.Args, args) {
		ps.add("%s changes the container's command, image or arguments (%q, %s, %q); kubectl run sets them", file, c.Command, c.Image, c.Args)
	}

	// The NATS context comes from a read-only Secret; the names of the
	// stream and consumer from the workers' ConfigMap.
	context := ""
	for _, e := range c.Env {
		if p := envProblem(e.Name); p != "" && e.Name != "NATS_CONTEXT" {
			ps.add("%s sets %s: %s", file, e.Name, p)
		}
		switch {
		case e.Name == "NATS_CONTEXT":
			context = e.Value
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			if ref.Name != cm.Name {
				ps.add("%s: %s comes from ConfigMap %q; the workers' is %q", file, e.Name, ref.Name, cm.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				ps.add("%s: %s comes from key %s of ConfigMap %s, which has no such key", file, e.Name, ref.Key, cm.Name)
			}
		}
	}
	if !strings.HasSuffix(context, ".json") {
		ps.add("%s: NATS_CONTEXT is %q; want the path of the mounted context's .json file", file, context)
	} else if p := cliSecretProblem(pod, c, context); p != "" {
		ps.add("%s: NATS_CONTEXT=%s: %s", file, context, p)
	}

	// Not a worker: no selector of the base picks the CLI pod.
	podLabels := labels.Set(pod.Labels)
	for _, sel := range []struct {
		what string
		sel  *metav1.LabelSelector
	}{
		{"the Deployment", dep.Spec.Selector},
		{"the PodDisruptionBudget", m.budgets[0].Spec.Selector},
		{"Service " + m.services[0].Name, metav1.SetAsLabelSelector(m.services[0].Spec.Selector)},
	} {
		if s, err := metav1.LabelSelectorAsSelector(sel.sel); err == nil && s.Matches(podLabels) {
			ps.add("%s: %s selects the CLI pod (labels %s), as if it were a worker", file, sel.what, podLabels)
		}
	}
	return ps
}

// cliSecretProblem: file is in a Secret volume mounted read-only.
func cliSecretProblem(pod *corev1.Pod, c corev1.Container, file string) string {
	for _, vm := range c.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		if !vm.ReadOnly {
			return fmt.Sprintf("volume %s is not mounted readOnly", vm.Name)
		}
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 || pod.Spec.Volumes[i].Secret == nil {
			return fmt.Sprintf("volume %s is not a Secret", vm.Name)
		}
		return ""
	}
	return "no volume is mounted there"
}

func TestMutatedCLIPodFails(t *testing.T) {
	runMutations(t, []mutationCase{
		{"without runAsNonRoot", cliPodOverrides, replace(`"runAsNonRoot": true, `, ""), checkCLIPod, "runAsNonRoot != true"},
		{"with privilege escalation", cliPodOverrides, replace(`"allowPrivilegeEscalation": false`, `"allowPrivilegeEscalation": true`), checkCLIPod, "allowPrivilegeEscalation != false"},
		{"replacing the arguments", cliPodOverrides, replace(`{"op": "add", "path": "/spec/containers/0/env"`, `{"op": "add", "path": "/spec/containers/0/args", "value": ["worker"]},`+"\n  "+`{"op": "add", "path": "/spec/containers/0/env"`), checkCLIPod, "changes the container's command, image or arguments"},
		{"a ConfigMap key the base lacks", cliPodOverrides, replace(`"key": "BCCSTOP_CONSUMER"`, `"key": "BCCSTOP_DURABLE"`), checkCLIPod, "has no such key"},
		{"the context outside the mount", cliPodOverrides, replace(`"value": "/etc/bccstop/nats/context.json"`, `"value": "/etc/nats/context.json"`), checkCLIPod, "no volume is mounted there"},
		{"the worker's labels", cliPodOverrides, replace(`{"op": "add", "path": "/spec/automountServiceAccountToken"`, `{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "bccstop"},`+"\n  "+`{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1component", "value": "worker"},`+"\n  "+`{"op": "add", "path": "/spec/automountServiceAccountToken"`), checkCLIPod, "as if it were a worker"},
		{"a patch path kubectl's pod lacks", cliPodOverrides, replace(`"/spec/containers/0/securityContext"`, `"/spec/containers/1/securityContext"`), checkCLIPod, "does not apply to the pod kubectl run makes"},
	})
}
