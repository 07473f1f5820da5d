// Validates KEDA resources with KEDA's published models: reads a JSON list of resources on stdin,
// prints one JSON list of problems (empty when all are valid). argv[2] is the npm prefix that
// `make install` filled (.venv/keda), outside the source tree.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const models = join(process.argv[2], "node_modules", "@kubernetes-models", "keda", "keda.sh", "v1alpha1");
const kinds = {
  ScaledObject: (await import(pathToFileURL(join(models, "ScaledObject.js")).href)).ScaledObject,
  TriggerAuthentication: (await import(pathToFileURL(join(models, "TriggerAuthentication.js")).href))
    .TriggerAuthentication,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
for (const resource of JSON.parse(input)) {
  const Model = kinds[resource.kind];
  if (Model === undefined) {
    problems.push(`${resource.kind}: not a KEDA kind this check knows`);
    continue;
  }
  try {
    new Model(resource).validate();
  } catch (error) {
    problems.push(`${resource.kind} ${resource.metadata?.name}: ${error.message}`);
  }
}
console.log(JSON.stringify(problems));
