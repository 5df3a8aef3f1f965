#!/usr/bin/env node
// make-golden-faceapi.mjs - golden outputs for the two face-api networks that vultus builds in C
// from their weights manifests (which ship without a graph): the face recognition ResNet
// (src/face/faceapi_resnet.c, the default embedder) and the age/gender TinyXception
// (src/face/faceapi_agegender.c, the default age/gender model).
//
// Unlike make-golden-ssd.mjs, this runs face-api's OWN network code: @vladmandic/face-api 1.7.15
// (the version of the model pack, tools/models.sha256), its CommonJS build
// dist/face-api.node-wasm.js, which takes TF.js from @tensorflow/tfjs (the pinned 4.22.0; its
// other node build needs the native tfjs-node, and the ESM builds import TF.js's ESM dist, which
// node cannot resolve). That build also requires @tensorflow/tfjs-backend-wasm, so it is
// installed, but the backend is set to the pure-JS 'cpu' one before anything runs. The weights
// are loaded by face-api's own NeuralNetwork.loadFromDisk from models/faceapi/, the files the C
// side loads, and the networks run through their public entry points:
//   FaceRecognitionNet.computeFaceDescriptor(input)   -> 128 floats (not normalised)
//   AgeGenderNet.forward(input)                       -> age (years), softmax(gender) [male, female]
// Both apply their own preprocessing to a pixel tensor (0..255): NetInput.toBatchTensor pads to a
// square and resizes bilinearly when the input is not already size x size (here it always is,
// so neither happens), then normalize() subtracts the VGG-Face means [122.782, 117.001, 104.298]
// and divides by 255.
//
// Usage (from tools/golden): node make-golden-faceapi.mjs [--models ../../models] [--out DIR]
// Writes to DIR (default tests/face/golden):
//   faceapi_resnet.INPUT.gold      descriptor [N,128]
//   faceapi_agegender.INPUT.gold   age [N], gender [N,2]
//   faceapi_index.json             versions, weights sha256, input shapes and hashes
// for INPUT in face, random (N = 1) and batch2 (N = 2: [random, face]). Inputs are RGB pixel
// tensors of the network's size (150x150 for the ResNet, 112x112 for age/gender), float32 holding
// integers 0..255:
//   face    face256.rgb (tests/nn/golden) resized by tests/nn/golden.h's nearest-neighbour rule,
//           sy = floor((2y + 1) * 256 / (2H)), the u8 values unchanged;
//   random  s = 937; per element in NHWC order s = (s * 1103515245 + 12345) mod 2^32, value
//           s >>> 24 (= floor(256 * golden.h's "random" value)).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { goldBuffer, nearest } from './gold.mjs';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(SCRIPT_DIR, '..', '..');
const args = { models: path.join(REPO, 'models'), out: path.join(REPO, 'tests', 'face', 'golden') };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--models') args.models = process.argv[++i];
  else if (a === '--out') args.out = process.argv[++i];
  else throw new Error(`unknown argument: ${a}`);
}


function facePixels(rgb, size) {
  const v = new Float32Array(size * size * 3);
  let k = 0;
  for (let y = 0; y < size; y++) {
    const sy = nearest(y, 256, size);
    for (let x = 0; x < size; x++) {
      const si = (sy * 256 + nearest(x, 256, size)) * 3;
      for (let c = 0; c < 3; c++) v[k++] = rgb[si + c];
    }
  }
  return v;
}

function randomPixels(size) {
  const v = new Float32Array(size * size * 3);
  let s = 937;
  for (let i = 0; i < v.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    v[i] = s >>> 24;
  }
  return v;
}

function fnv1a(f32) {
  const b = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}


const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// The face-api input for one golden input: a [1,S,S,3] tensor, or for batch2 an array of two
// [S,S,3] tensors (face-api's batch input: NetInput rejects a Tensor4D with batch > 1).
function inputsFor(size, rgb) {
  const face = facePixels(rgb, size), random = randomPixels(size);
  return [
    { name: 'face', pixels: [face], make: () => tf.tensor4d(face, [1, size, size, 3]) },
    { name: 'random', pixels: [random], make: () => tf.tensor4d(random, [1, size, size, 3]) },
    { name: 'batch2', pixels: [random, face],
      make: () => [tf.tensor3d(random, [size, size, 3]), tf.tensor3d(face, [size, size, 3])] },
  ];
}

const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu' || faceapi.tf.engine() !== tf.engine()) throw new Error('not on the tfjs cpu backend');
  const dir = path.join(args.models, 'faceapi');
  const rgb = fs.readFileSync(path.join(REPO, 'tests', 'nn', 'golden', 'face256.rgb'));
  fs.mkdirSync(args.out, { recursive: true });
  const index = {
    generator: 'tools/golden/make-golden-faceapi.mjs',
    faceapi: faceapi.version,
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    networks: {},
  };

  const nets = [
    {
      key: 'faceapi_resnet', size: 150, net: new faceapi.FaceRecognitionNet(),
      manifest: 'face_recognition_model-weights_manifest.json', weights: 'face_recognition_model.bin',
      run: async (net, input, n) => {
        const d = await net.computeFaceDescriptor(input);
        const all = new Float32Array(n * 128);
        (n === 1 ? [d] : d).forEach((v, i) => all.set(v, 128 * i));
        return [{ name: 'descriptor', shape: [n, 128], data: all }];
      },
    },
    {
      key: 'faceapi_agegender', size: 112, net: new faceapi.AgeGenderNet(),
      manifest: 'age_gender_model-weights_manifest.json', weights: 'age_gender_model.bin',
      run: async (net, input, n) => {
        const out = await net.forward(input);
        const r = [
          { name: 'age', shape: [n], data: out.age.dataSync().slice() },
          { name: 'gender', shape: [n, 2], data: out.gender.dataSync().slice() },
        ];
        out.age.dispose();
        out.gender.dispose();
        return r;
      },
    },
  ];

  for (const nt of nets) {
    await nt.net.loadFromDisk(path.join(dir, nt.manifest));
    const entry = {
      manifest_sha256: sha256(path.join(dir, nt.manifest)),
      weights_sha256: sha256(path.join(dir, nt.weights)),
      input: [nt.size, nt.size, 3],
      goldens: {},
    };
    const results = {};
    for (const inp of inputsFor(nt.size, rgb)) {
      const n = inp.pixels.length;
      const x = inp.make();
      const t0 = process.hrtime.bigint();
      const outputs = await nt.run(nt.net, x, n);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      tf.dispose(x);
      results[inp.name] = outputs;
      const hashes = inp.pixels.map(fnv1a);
      console.log(`${nt.key}.${inp.name}: input [${n},${nt.size},${nt.size},3] fnv1a ${hashes.join(' ')}, `
        + `${ms.toFixed(0)} ms, ${outputs.map((o) => `${o.name} [${o.shape}]`).join(', ')}`);
      const file = path.join(args.out, `${nt.key}.${inp.name}.gold`);
      fs.writeFileSync(file, goldBuffer(outputs));
      entry.goldens[inp.name] = {
        file: path.basename(file), batch: n, input_fnv1a: hashes,
        outputs: outputs.map((o) => ({ name: o.name, shape: o.shape })),
      };
    }
    index.networks[nt.key] = entry;
    // sanity figures
    if (nt.key === 'faceapi_resnet') {
      const f = results.face[0].data, r = results.random[0].data, b = results.batch2[0].data;
      console.log(`  |descriptor| face ${norm(f).toFixed(4)}, random ${norm(r).toFixed(4)}; `
        + `cosine(face, random) ${cosine(f, r).toFixed(4)}; `
        + `cosine(batch2[1], face) ${cosine(b.slice(128), f).toFixed(7)}`);
    } else {
      for (const name of ['face', 'random']) {
        const [age, gender] = results[name];
        console.log(`  ${name}: age ${age.data[0].toFixed(2)}, p(male) ${gender.data[0].toFixed(4)}, `
          + `p(female) ${gender.data[1].toFixed(4)}`);
      }
      // the public prediction, as face-api's users see it, agrees with forward()
      const p = await nt.net.predictAgeAndGender(tf.tensor4d(facePixels(rgb, nt.size), [1, nt.size, nt.size, 3]));
      console.log(`  predictAgeAndGender(face): age ${p.age.toFixed(2)}, ${p.gender} (${p.genderProbability.toFixed(4)})`);
    }
  }
  const indexFile = path.join(args.out, 'faceapi_index.json');
  fs.writeFileSync(indexFile, `${JSON.stringify(index, null, 2)}\n`);
  console.log(`face-api ${faceapi.version}, tfjs ${tf.version.tfjs} (${tf.getBackend()}); wrote ${args.out}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
