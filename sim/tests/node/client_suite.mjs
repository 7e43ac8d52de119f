// The official JavaScript client (@kubernetes/client-node, npm) against podgrant-sim over HTTPS.
//
// Run by sim/tests/node_client.rs as `node client_suite.mjs KUBECONFIG`; prints `ok <case>` for
// each case that held and exits non-zero on the first that did not. Each case names the
// upstream behaviour it checks. The client refuses plain http://, so this is also the test
// that the written kubeconfig's CA and serving certificate satisfy Node's TLS stack.
import https from 'node:https';
import * as k8s from '@kubernetes/client-node';

const kc = new k8s.KubeConfig();
kc.loadFromFile(process.argv[2]);
const NS = 'js';
const core = kc.makeApiClient(k8s.CoreV1Api);
const apps = kc.makeApiClient(k8s.AppsV1Api);

const ok = (name) => console.log(`ok ${name}`);
const assert = (cond, what) => {
  if (!cond) throw new Error(`assertion failed: ${what}`);
};
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
async function expectCode(code, promise) {
  try {
    await promise;
  } catch (e) {
    assert(e.code === code, `wanted ${code}, got ${e.code}: ${e.body}`);
    return typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
  }
  throw new Error(`wanted an ApiException ${code}, the call succeeded`);
}
// The sim's /_sim admin API, with the kubeconfig's CA.
function admin(method, path, body) {
  const cluster = kc.getCurrentCluster();
  const url = new URL(path, cluster.server);
  const ca = Buffer.from(cluster.caData, 'base64');
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
const pod = (name) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name },
  spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] },
});

// -- list, then watch from the list's resourceVersion (API conventions "Efficient detection of
// changes"): the watch sees exactly the later change.
const listed = await core.listNamespacedPod({ namespace: NS });
const rv = listed.metadata.resourceVersion;
assert(JSON.stringify(listed.items.map((p) => p.metadata.name).sort()) === '["bound-0","bound-1"]',
  `listed ${listed.items.map((p) => p.metadata.name)}`);
await core.createNamespacedPod({ namespace: NS, body: pod('after-list') });
{
  const watch = new k8s.Watch(kc);
  const seen = [];
  let ctl;
  await Promise.race([
    new Promise((resolve, reject) => {
      watch.watch(`/api/v1/namespaces/${NS}/pods`, { resourceVersion: rv }, (type, obj) => {
        seen.push(`${type} ${obj.metadata.name}`);
        resolve();
      }, (err) => (err ? reject(err) : resolve())).then((c) => { ctl = c; });
    }),
    deadline(10000, 'the watch event'),
  ]);
  ctl?.abort();
  assert(JSON.stringify(seen) === '["ADDED after-list"]', `seen ${seen}`);
}
ok('watch_resumes_from_the_list_resource_version');

// -- a watch from a compacted RV: 200 and an in-stream ERROR carrying a 410 Expired Status
// (the watch cache's answer) — the signal to relist.
await admin('POST', '/_sim/compact', {});
{
  const watch = new k8s.Watch(kc);
  let ctl;
  const got = await Promise.race([
    new Promise((resolve, reject) => {
      watch.watch(`/api/v1/namespaces/${NS}/pods`, { resourceVersion: rv }, (type, obj) => resolve({ type, obj }),
        (err) => (err ? resolve({ err }) : reject(new Error('the watch ended with no event')))).then((c) => { ctl = c; });
    }),
    deadline(10000, 'the 410'),
  ]);
  ctl?.abort();
  assert(got.type === 'ERROR' && got.obj.code === 410, `got ${JSON.stringify(got)}`);
}
ok('watch_from_a_compacted_rv_is_410');

// -- an informer (list, then watch, the client's cache): it sees the listed pods, then a new one.
{
  const informer = k8s.makeInformer(kc, `/api/v1/namespaces/${NS}/pods`,
    () => core.listNamespacedPod({ namespace: NS }));
  const added = new Set();
  let wake = () => {};
  informer.on('add', (p) => { added.add(p.metadata.name); wake(); });
  informer.on('error', () => {});
  await informer.start();
  const until = async (cond, what) => {
    const end = Date.now() + 10000;
    while (!cond()) {
      assert(Date.now() < end, `timed out: ${what}`);
      await new Promise((r) => { wake = r; setTimeout(r, 200); });
    }
  };
  await until(() => added.has('after-list') && added.has('bound-0'), 'the informer list');
  await core.createNamespacedPod({ namespace: NS, body: pod('by-watch') });
  await until(() => added.has('by-watch'), 'the informer watch');
  await informer.stop();
  assert(informer.list().some((p) => p.metadata.name === 'by-watch'), 'the cache holds the new pod');
}
ok('informer_lists_then_watches');

// -- CRUD with the typed API: create, read, replace, merge patch, delete; the generated
// defaults come back (pkg/apis/core/v1/defaults.go), a second create is 409 AlreadyExists.
{
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'conf' }, data: { a: '1' } };
  const made = await core.createNamespacedConfigMap({ namespace: NS, body: cm });
  assert(made.metadata.uid && made.metadata.resourceVersion, 'uid and resourceVersion set');
  const dup = await expectCode(409, core.createNamespacedConfigMap({ namespace: NS, body: cm }));
  assert(dup.reason === 'AlreadyExists', JSON.stringify(dup));
  made.data.b = '2';
  const replaced = await core.replaceNamespacedConfigMap({ name: 'conf', namespace: NS, body: made });
  assert(replaced.data.b === '2', 'replaced');
  const stale = await expectCode(409, core.replaceNamespacedConfigMap({ name: 'conf', namespace: NS, body: made }));
  assert(stale.reason === 'Conflict', JSON.stringify(stale));
  const patched = await core.patchNamespacedConfigMap({ name: 'conf', namespace: NS, body: { data: { c: '3' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  assert(patched.data.a === '1' && patched.data.c === '3', JSON.stringify(patched.data));
  await core.deleteNamespacedConfigMap({ name: 'conf', namespace: NS });
  await expectCode(404, core.readNamespacedConfigMap({ name: 'conf', namespace: NS }));
}
ok('typed_crud_with_conflicts');

// -- dry run (API conventions "Dry-run"): answered like the write, nothing stored.
{
  const out = await core.createNamespacedPod({ namespace: NS, body: pod('dry'), dryRun: 'All' });
  assert(out.metadata.name === 'dry' && out.spec.dnsPolicy === 'ClusterFirst', JSON.stringify(out.spec));
  await expectCode(404, core.readNamespacedPod({ name: 'dry', namespace: NS }));
}
ok('dry_run_create_stores_nothing');

// -- server-side apply (KEP-555): create by apply, a second manager's change is 409 naming the
// field, force moves it.
{
  const deploy = (replicas) => ({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: NS },
    spec: { replicas, selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } } },
  });
  const ssa = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply);
  const made = await apps.patchNamespacedDeployment({ name: 'web', namespace: NS, body: deploy(2), fieldManager: 'alpha' }, ssa);
  assert(made.spec.replicas === 2 && made.metadata.managedFields[0].manager === 'alpha', JSON.stringify(made.metadata));
  const conflict = await expectCode(409, apps.patchNamespacedDeployment(
    { name: 'web', namespace: NS, body: deploy(5), fieldManager: 'beta' }, ssa));
  assert(conflict.message.includes('.spec.replicas'), conflict.message);
  const forced = await apps.patchNamespacedDeployment(
    { name: 'web', namespace: NS, body: deploy(5), fieldManager: 'beta', force: true }, ssa);
  assert(forced.spec.replicas === 5, 'forced');
}
ok('server_side_apply_conflicts_unless_forced');
