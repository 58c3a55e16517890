package deploycheck

// deploy/kubernetes/README.md, held to the base it explains: its commands
// come in the order a user runs them (the image set before the base is
// applied, the namespace before the Secrets in it, the Secrets before the
// pods that wait for them), and name what the base uses.

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

const kubeREADME = kubeDir + "/README.md"

func TestKubernetesREADMEInTheOrderAUserRunsIt(t *testing.T) {
	report(t, checkKubernetesREADME(t, theRepo))
}

func checkKubernetesREADME(t *testing.T, r repo) problems {
	t.Helper()
	var ps problems
	m, ok := loadKubernetes(r, &ps)
	if !ok {
		return ps
	}
	raw, err := r.read(kubeREADME)
	if err != nil {
		ps.add("%s: %v", kubeREADME, err)
		return ps
	}
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		for _, line := range strings.Split(strings.ReplaceAll(block[1], "\\\n", " "), "\n") {
			if line = strings.Join(strings.Fields(line), " "); line != "" && !strings.HasPrefix(line, "#") {
				lines = append(lines, line)
			}
		}
	}
	first := func(pattern string) int {
		re := regexp.MustCompile(pattern)
		return slices.IndexFunc(lines, re.MatchString)
	}
	apply := first(`kubectl apply -k deploy/kubernetes\b`)
	if apply < 0 {
		ps.add("%s: no `kubectl apply -k deploy/kubernetes`", kubeREADME)
		return ps
	}

	// The image: the name the Deployment's container gives, set before the
	// base is applied (or the cluster pulls an image called bccstop).
	var images []string
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
	}
	var named []string
	for _, img := range m.kustomization.Images {
		named = append(named, img.Name)
	}
	setImage := first(`kustomize edit set image \S+=`)
	switch {
	case setImage < 0:
		ps.add("%s: no `kustomize edit set image`: the base would run an image called %v from a public registry", kubeREADME, named)
	case setImage > apply:
		ps.add("%s: `kustomize edit set image` comes after `kubectl apply -k`: the first rollout would pull the wrong image", kubeREADME)
	default:
		name, _, _ := strings.Cut(regexp.MustCompile(`set image (\S+)=`).FindStringSubmatch(lines[setImage])[1], "=")
		if !slices.Contains(named, name) && !slices.ContainsFunc(images, func(img string) bool {
			return img == name || strings.HasPrefix(img, name+":") || strings.HasPrefix(img, name+"@")
		}) {
			ps.add("%s: `kustomize edit set image %s=…` names no image of the base (its Deployment runs %v)", kubeREADME, name, images)
		}
	}

	// The Secrets the pods mount, created in the base's namespace after the
	// namespace and before the base.
	namespace := first(`kubectl apply -f deploy/kubernetes/namespace\.yaml`)
	mounted := map[string][]string{} // Secret → keys the Deployment mounts
	for _, d := range m.deployments {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				for _, it := range v.Secret.Items {
					mounted[v.Secret.SecretName] = append(mounted[v.Secret.SecretName], it.Key)
				}
			}
		}
	}
	create := regexp.MustCompile(`kubectl -n (\S+) create secret generic (\S+)((?: --from-file=\S+)+)`)
	for _, name := range keys(mounted) {
		i := slices.IndexFunc(lines, func(l string) bool {
			m := create.FindStringSubmatch(l)
			return m != nil && m[2] == name
		})
		if i < 0 {
			ps.add("%s: no `kubectl create secret generic %s`, which the pods mount and wait for", kubeREADME, name)
			continue
		}
		c := create.FindStringSubmatch(lines[i])
		if c[1] != m.kustomization.Namespace {
			ps.add("%s: Secret %s is created in namespace %s; the base runs in %s", kubeREADME, name, c[1], m.kustomization.Namespace)
		}
		if namespace < 0 || namespace > i {
			ps.add("%s: Secret %s is created before `kubectl apply -f deploy/kubernetes/namespace.yaml`, in a namespace that does not exist yet", kubeREADME, name)
		}
		if i > apply {
			ps.add("%s: Secret %s is created after `kubectl apply -k`", kubeREADME, name)
		}
		for _, key := range mounted[name] {
			if !strings.Contains(c[3]+" ", " --from-file="+key+"=") {
				ps.add("%s: Secret %s is created without the key %s, which the Deployment mounts", kubeREADME, name, key)
			}
		}
	}
	return ps
}
