// validate.js - validates Kubernetes manifests against the OpenAPI schemas of the
// kubernetes-models package (compiled Ajv validators generated from the Kubernetes API
// specification): types, required fields, enums and formats of every object.
// Usage: node validate.js FILE.yaml...   Prints one line per document; exits 1 if any is invalid.
// Documents whose apiVersion/kind has no model (e.g. a kustomize Kustomization) are reported
// as "skip" and left to the structural check in test_k8s_schema.sh.
"use strict";
const fs = require("fs");
const YAML = require("yaml");

let bad = 0, ok = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      bad++;
      console.log(`INVALID ${file}: YAML: ${doc.errors[0].message}`);
      continue;
    }
    const o = doc.toJSON();
    if (o === null) continue;
    if (!o || typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
      bad++;
      console.log(`INVALID ${file}: no apiVersion/kind`);
      continue;
    }
    // Core objects live under kubernetes-models/v1/, the others under GROUP/VERSION/.
    const path = `${o.apiVersion}/${o.kind}`;
    let Model;
    try {
      Model = require(`kubernetes-models/${path}`)[o.kind];
    } catch (e) {
      console.log(`skip ${file}: ${o.apiVersion} ${o.kind} has no schema in kubernetes-models`);
      continue;
    }
    try {
      new Model(o).validate();
      ok++;
      console.log(`ok ${file}: ${o.kind} ${o.metadata && o.metadata.name}`);
    } catch (e) {
      bad++;
      console.log(`INVALID ${file}: ${o.kind}: ${e.message}`);
    }
  }
}
console.log(`k8s_schema: ${ok} valid, ${bad} invalid`);
process.exit(bad || !ok ? 1 : 0);
