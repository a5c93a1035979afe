// `bench compare`'s `our net on torch` column: bench/anchor/anchor_step.py rebuilds our dVAE in PyTorch
// from its layout. Same parameter count and forward multiply-adds as model/dvae.ts for every config, or
// the figure would compare two networks again. Needs the anchor's environment (`dalle bench compare
// --install-anchor`); skipped, saying so, where it is not installed (CI).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dvaeForwardMacs, dvaeParameterCount } from '../model/index.ts';
import { anchorInstalled, anchorVenv, compareSpec, configNames, runAnchor } from './compare.ts';

const venv = anchorVenv();
const skip = anchorInstalled(venv) ? false : `the anchor is not installed in ${venv}`;

test(
  'bench compare: our dVAE rebuilt in PyTorch has our parameters and forward multiply-adds',
  { skip },
  async () => {
    for (const config of configNames) {
      const d = compareSpec(config).dvae;
      const job = {
        model: 'dvae' as const,
        config,
        threads: 1,
        batch: 2,
        warmup: 0,
        steps: 1,
        kernels: false,
      };
      const r = await runAnchor(job, venv, 'ours');
      assert.equal(r.parameters, dvaeParameterCount(d), `${config}: parameters`);
      assert.equal(r.detail.forwardMacsPerItem, dvaeForwardMacs(d), `${config}: forward multiply-adds`);
      assert.equal(r.detail.network, 'ours');
      assert.equal(r.stepSec.length, 1);
    }
  },
);
