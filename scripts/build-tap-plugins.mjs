#!/usr/bin/env node
// Run before tap (package.json "test:node"): builds tap's test class with the plugins
// package.json's "tap.plugin" asks for, when it was built with others.
//
// Why: tap ships built with its default plugins, @tapjs/typescript (ts-node) among them,
// which pyfleet turns off for tsx. tap notices the difference and rebuilds itself, but
// only after it has chosen the loaders for the run it is starting: so the first run
// after `npm ci` started every test file with ts-node as well as tsx, and took ~160 s
// longer than the next one in CI (a quarter of the tap step). Building first avoids it.
// Costs ~7 s once per install; 0.4 s to check afterwards.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TapConfig } from '@tapjs/config'
import { signature } from '@tapjs/test'

const config = await TapConfig.load()
if (config.pluginSignature !== signature) {
  console.error("tap's test class was built with other plugins than package.json's tap.plugin: building it (once per install)")
  const tap = fileURLToPath(new URL('../node_modules/.bin/tap', import.meta.url))
  const code = await new Promise((resolve) => {
    spawn(process.execPath, [tap, 'build'], { stdio: ['ignore', 'ignore', 'inherit'] }).on('close', (status) => resolve(status ?? 1))
  })
  process.exit(code)
}
