package deploycheck

// Each case takes an in-memory copy of one artifact, drops a line a
// deployment needs (or breaks one), and asserts that the check reports it in
// words that name what went missing. A case whose line is no longer in the
// file fails, so the table keeps up with the files.

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// mutation changes an artifact; it returns false if nothing changed.
type mutation func([]byte) ([]byte, bool)

// drop removes every line matching the regular expression.
func drop(pattern string) mutation {
	re := regexp.MustCompile(pattern)
	return func(data []byte) ([]byte, bool) {
		lines := strings.SplitAfter(string(data), "\n")
		var kept []string
		for _, l := range lines {
			if !re.MatchString(strings.TrimRight(l, "\n")) {
				kept = append(kept, l)
			}
		}
		return []byte(strings.Join(kept, "")), len(kept) < len(lines)
	}
}

// replace replaces every old with new.
func replace(old, new string) mutation {
	return func(data []byte) ([]byte, bool) {
		return bytes.ReplaceAll(data, []byte(old), []byte(new)), bytes.Contains(data, []byte(old))
	}
}

// appendLine adds a line at the end.
func appendLine(line string) mutation {
	return func(data []byte) ([]byte, bool) { return append(bytes.Clone(data), line+"\n"...), true }
}

func TestMutatedArtifactsFail(t *testing.T) {
	compose := func(profile string) func(*testing.T, repo) problems {
		return func(t *testing.T, r repo) problems { return checkCompose(t, r, profile) }
	}
	dashboard := func(t *testing.T, r repo) problems { return checkDashboard(r, exportedSeries(t)) }
	const (
		deployment = kubeDir + "/deployment.yaml"
		kustomizer = kubeDir + "/kustomization.yaml"
		scaledObj  = kubeDir + "/scaledobject.yaml"
	)
	cases := []struct {
		name   string
		file   string
		mutate mutation
		check  func(*testing.T, repo) problems
		want   string // in one of the problems reported
	}{
		{"Dockerfile without EXPOSE", dockerfile, drop(`^EXPOSE 8080$`), checkDockerfile, "EXPOSE [] does not include 8080"},
		{"Dockerfile without HEALTHCHECK", dockerfile, drop(`^HEALTHCHECK `), checkDockerfile, "HEALTHCHECK: want"},
		{"Dockerfile without ENTRYPOINT", dockerfile, drop(`^ENTRYPOINT `), checkDockerfile, "ENTRYPOINT: want exactly the binary"},
		{"Dockerfile without CMD", dockerfile, drop(`^CMD \["worker"\]$`), checkDockerfile, "CMD: want the exec form"},
		{"Dockerfile without the binary's COPY", dockerfile, drop(`^COPY --from=build`), checkDockerfile, "no COPY --from=… puts the binary there"},
		{"Dockerfile without CGO_ENABLED=0", dockerfile, drop(`CGO_ENABLED=0`), checkDockerfile, "without CGO_ENABLED=0"},
		{"Dockerfile without ARG VERSION", dockerfile, drop(`^ARG VERSION`), checkDockerfile, "declares no ARG VERSION"},
		{"Dockerfile with a root USER", dockerfile, replace("USER 65532:65532", "USER 0"), checkDockerfile, "must not be root"},
		{"Dockerfile setting an unknown -X", dockerfile, replace("-X main.commit=", "-X main.revision="), checkDockerfile, "declares no package-level string revision"},
		{"Dockerfile with a shell-form CMD", dockerfile, replace(`CMD ["worker"]`, `CMD worker`), checkDockerfile, "CMD: want the exec form"},
		{"Dockerfile with a lower-case as", dockerfile, replace(" AS build", " as build"), checkDockerfile, "BuildKit check FromAsCasing"},

		{".dockerignore without .git", ".dockerignore", drop(`^\.git$`), checkDockerignore, ".git is not excluded"},
		{".dockerignore excluding the embedded schemas", ".dockerignore", appendLine("**/*.json"), checkDockerignore, "messages/schema/command.schema.json"},

		{"compose without the worker's port", composeFile, replace(`"127.0.0.1:8080:8080"`, `"127.0.0.1:8080:8081"`), compose("default"), "service worker publishes no port 8080"},
		{"compose with an empty port list", composeFile, drop(`"127.0.0.1:(8080:8080|8900:8900)"`), compose("default"), "services.worker.ports must be a array"},
		{"compose without stop_grace_period", composeFile, drop(`stop_grace_period:`), compose("default"), "stop_grace_period (<nil>) must be longer"},
		{"compose without the healthy NATS condition", composeFile, replace("condition: service_healthy", "condition: service_started"), compose("default"), "must depend on nats with condition service_healthy"},
		{"compose without the simulator's network_mode", composeFile, drop(`network_mode: "service:worker"`), compose("default"), "service fakebcc has network_mode \"\""},
		{"compose without BCC_ENDPOINT", composeFile, drop(`BCC_ENDPOINT: http://127.0.0.1:8900`), compose("default"), "but the worker calls BCC_ENDPOINT=https://bcc.bj.baidubce.com"},
		{"compose without the simulator's port", composeFile, drop(`"127.0.0.1:8900:8900"`), compose("default"), "service worker publishes no port 8900 for the simulator"},
		{"compose with the simulator open on every interface", composeFile, replace(`"127.0.0.1:8900:8900"`, `"8900:8900"`), compose("default"), "publishes the simulator's port 8900 on every interface"},
		{"compose with the simulator on another host port", composeFile, replace(`"127.0.0.1:8900:8900"`, `"127.0.0.1:18900:8900"`), compose("default"), "publishes the simulator's port 8900 as 18900"},
		{"compose with the simulator on its loopback only", composeFile, replace(`"--addr", "0.0.0.0:8900"`, `"--addr", "127.0.0.1:8900"`), compose("default"), "which a published port does not reach"},
		{"compose without the simulator's seed", composeFile, replace(`, "--seed", "/etc/bccstop/seed.txt"`, ``), compose("default"), "service fakebcc runs without --seed"},
		{"compose without the seed mounted", composeFile, replace(`seed.txt:/etc/bccstop/seed.txt:ro`, `seed.txt:/etc/bccstop/instances.txt:ro`), compose("default"), "reads --seed /etc/bccstop/seed.txt, which no bind mount provides"},
		{"compose with the simulator's health check on", composeFile, replace("disable: true", "disable: false"), compose("default"), "service fakebcc inherits the image's health check"},
		{"compose without the NATS volume", composeFile, replace("- nats-data:/data", "- nats-data:/store"), compose("default"), "keeps JetStream in \"/data\" without a volume"},
		{"compose without the NATS volume declared", composeFile, replace("volumes:\n  nats-data:\n", "volumes:\n  nats-store:\n"), compose("default"), "undefined volume nats-data"},
		{"compose without NATS's client port", composeFile, drop(`"127.0.0.1:4222:4222"`), compose("default"), "does not publish 4222:4222"},
		{"compose with NATS open on every interface", composeFile, replace(`"127.0.0.1:4222:4222"`, `"4222:4222"`), compose("default"), "publishes 4222 on every interface"},
		{"compose with NATS without the roles", composeFile, replace(`command: ["-c", "/etc/nats/nats-server.conf"]`, `command: ["-js", "-sd", "/data", "-m", "8222"]`), compose("default"), "runs without -c"},
		{"compose with the worker as another role", composeFile, replace("NATS_USER: worker", "NATS_USER: operator"), compose("default"), "is not a user of the worker role"},

		{"README's Compose lines with the simulator's port inside", readmeFile, replace("BCC_ENDPOINT=http://127.0.0.1:8900\n  nats", "BCC_ENDPOINT=http://127.0.0.1:8901\n  nats"), checkREADMECompose, "the Compose lines export BCC_ENDPOINT=http://127.0.0.1:8901; from the host, docker-compose.yml gives http://127.0.0.1:8900"},
		{"README's Compose lines as the worker", readmeFile, replace("NATS_USER=publisher NATS_PASSWORD=dev-publisher-password", "NATS_USER=worker NATS_PASSWORD=dev-worker-password"), checkREADMECompose, "NATS_USER=worker with NATS_PASSWORD=dev-worker-password, which is no publisher"},
		{"README's Compose lines naming an unseeded instance", readmeFile, replace(`nats pub bcc.instance.stop '{"instanceId":"i-YufwpQAe"}'`, `nats pub bcc.instance.stop '{"instanceId":"i-nowhere"}'`), checkREADMECompose, "names i-nowhere, which the simulator's seed does not have"},

		{"compose without Jaeger's OTLP switch", composeFile, replace(`COLLECTOR_OTLP_ENABLED: "true"`, `COLLECTOR_OTLP_ENABLED: "false"`), compose("default"), "COLLECTOR_OTLP_ENABLED=true"},
		{"compose with an unknown variable", composeFile, replace("BCCSTOP_LOG_LEVEL: info", "BCCSTOP_LOGLEVEL: info"), compose("default"), "service worker sets BCCSTOP_LOGLEVEL: bccstop reads no such variable"},
		{"compose with an unknown key", composeFile, replace("stop_grace_period:", "stop_grace_periods:"), compose("default"), "stop_grace_periods"},
		{"compose without the Prometheus target", composeFile, drop(`targets: \["worker:8080"\]`), compose("observability"), "not worker:8080"},
		{"compose without the prometheus profile's service", composeFile, replace(`profiles: ["observability"]`+"\n    image: prom/", `profiles: ["metrics"]`+"\n    image: prom/"), compose("observability"), "depends on undefined service \"prometheus\""},

		{"kustomization without its namespace", kustomizer, drop(`^namespace: bccstop$`), checkKubernetes, "no namespace"},
		{"kustomization without the ScaledObject", kustomizer, drop(`- scaledobject.yaml`), checkKubernetes, "scaledobject.yaml is not listed"},
		{"kustomization naming a missing file", kustomizer, replace("- service.yaml", "- services.yaml"), checkKubernetes, "services.yaml"},
		{"Deployment without readOnlyRootFilesystem", deployment, drop(`readOnlyRootFilesystem: true`), checkKubernetes, "readOnlyRootFilesystem is not true"},
		{"Deployment without allowPrivilegeEscalation", deployment, drop(`allowPrivilegeEscalation: false`), checkKubernetes, "Pod Security Standard \"restricted\": allowPrivilegeEscalation != false"},
		{"Deployment without runAsNonRoot", deployment, drop(`runAsNonRoot: true`), checkKubernetes, "runAsNonRoot is not true"},
		{"Deployment without capabilities drop", deployment, drop(`drop: \["ALL"\]`), checkKubernetes, "capabilities must drop ALL"},
		{"Deployment without the readiness path", deployment, drop(`path: /readyz`), checkKubernetes, "readinessProbe asks ; want /readyz"},
		{"Deployment without the memory limit", deployment, drop(`memory: 256Mi`), checkKubernetes, "no memory limit"},
		{"Deployment without the component label", deployment, drop(`app.kubernetes.io/component: worker`), checkKubernetes, "the PodDisruptionBudget selects"},
		{"Deployment without the secret file variable", deployment, drop(`BCE_SECRET_ACCESS_KEY_FILE$|value: /etc/bccstop/bce/secret-access-key$`), checkKubernetes, "does not set BCE_SECRET_ACCESS_KEY_FILE"},
		{"Deployment with a duplicate key", deployment, drop(`name: BCE_SECRET_ACCESS_KEY_FILE`), checkKubernetes, `mapping key "value" already defined`},
		{"Deployment with a misspelt field", deployment, replace("readOnly: true", "readonly: true"), checkKubernetes, `unknown field "spec.template.spec.containers[0].volumeMounts[0].readonly"`},
		{"Deployment with a short grace period", deployment, replace("terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 20"), checkKubernetes, "terminationGracePeriodSeconds (20) must be more"},
		{"Deployment without a NATS identity", deployment, drop(`name: NATS_NKEY$|value: /etc/bccstop/nats/worker.nk$`), checkKubernetes, "has no NATS identity"},
		{"Deployment with a NATS password in the environment", deployment, replace("- name: NATS_NKEY\n              value: /etc/bccstop/nats/worker.nk", "- name: NATS_NKEY\n              value: /etc/bccstop/nats/worker.nk\n            - name: NATS_PASSWORD\n              value: hunter2"), checkKubernetes, "NATS_PASSWORD is set in the environment"},
		{"ScaledObject in the global account", scaledObj, replace(`account: "BCCSTOP"`, `account: "$G"`), checkKubernetes, `reads account "$G"`},
		{"ConfigMap without BCCSTOP_REPLICAS", kubeDir + "/configmap.yaml", drop(`BCCSTOP_REPLICAS:`), checkKubernetes, "BCCSTOP_REPLICAS is 1"},
		{"ConfigMap with an unknown variable", kubeDir + "/configmap.yaml", replace("BCCSTOP_RATE_LIMIT:", "BCCSTOP_RATELIMIT:"), checkKubernetes, "ConfigMap bccstop sets BCCSTOP_RATELIMIT"},
		{"Namespace without Pod Security", kubeDir + "/namespace.yaml", drop(`pod-security.kubernetes.io/enforce`), checkKubernetes, "enforces Pod Security level \"\""},
		{"PodDisruptionBudget without a budget", kubeDir + "/poddisruptionbudget.yaml", drop(`maxUnavailable: 1`), checkKubernetes, "sets neither minAvailable nor maxUnavailable"},
		{"ScaledObject without the consumer", scaledObj, drop(`consumer: "bccstop-worker"`), checkKubernetes, "watches consumer \"\""},
		{"ScaledObject without lagThreshold", scaledObj, drop(`lagThreshold: "200"`), checkKubernetes, "lagThreshold \"\" is not a positive whole number"},
		{"ScaledObject without maxReplicaCount", scaledObj, drop(`maxReplicaCount:`), checkKubernetes, "needs minReplicaCount and maxReplicaCount"},
		{"ScaledObject with an undocumented key", scaledObj, replace("lagThreshold:", "lagTreshold:"), checkKubernetes, `unknown field "lagTreshold"`},
		{"ScaledObject with a misplaced field", scaledObj, replace("pollingInterval:", "pollInterval:"), checkKubernetes, `unknown field "pollInterval"`},

		{"Kubernetes README setting another image", kubeREADME, replace("kustomize edit set image bccstop=", "kustomize edit set image bccstop-worker="), checkKubernetesREADME, "names no image of the base"},
		{"Kubernetes README applying the base before the Secrets", kubeREADME, replace("kubectl apply -f deploy/kubernetes/namespace.yaml", "kubectl apply -k deploy/kubernetes"), checkKubernetesREADME, "is created after `kubectl apply -k`"},
		{"Kubernetes README without the nkey's key", kubeREADME, replace("--from-file=worker.nk=./worker.nk", "--from-file=./worker.nk"), checkKubernetesREADME, "created without the key worker.nk"},
		{"Kubernetes README with the Secret elsewhere", kubeREADME, replace("kubectl -n bccstop create secret generic bccstop-bce", "kubectl -n default create secret generic bccstop-bce"), checkKubernetesREADME, "Secret bccstop-bce is created in namespace default"},

		{"dashboard without uid", dashboardFile, drop(`^  "uid": "bccstop",$`), dashboard, "set uid and title"},
		{"dashboard without the datasource variable", dashboardFile, drop(`"type": "datasource",`), dashboard, "no datasource template variable"},
		{"dashboard with a renamed metric", dashboardFile, replace("bccstop_ledger_hits_total", "bccstop_ledger_hit_total"), dashboard, "queries bccstop_ledger_hit_total, which the worker does not export"},
		{"dashboard with a label the metric lacks", dashboardFile, replace("sum by (reason)", "sum by (cause)"), dashboard, "groups by \"cause\""},
		{"dashboard with broken PromQL", dashboardFile, replace(`max(bccstop_consumer_pending{job=~\"$job\"})`, `max(bccstop_consumer_pending{job=~\"$job\"}`), dashboard, "is not PromQL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := theRepo.read(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			mutated, changed := tc.mutate(data)
			if !changed {
				t.Fatalf("%s: the mutation changes nothing; update the case to the file", tc.file)
			}
			found := tc.check(t, theRepo.with(tc.file, mutated))
			for _, p := range found {
				if strings.Contains(p, tc.want) {
					t.Logf("reported: %s", p)
					return
				}
			}
			t.Errorf("%s, mutated: no problem says %q; the check reported:\n%s", tc.file, tc.want, strings.Join(found, "\n"))
		})
	}
}
