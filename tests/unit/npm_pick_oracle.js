// The oracle for scan's version resolution: npm's own npm-pick-manifest (bundled with npm).
// usage: node npm_pick_oracle.js NPM_ROOT PACKUMENT.json SPEC...  -> {spec: version | "ERR code"}
const path = require('path')
const fs = require('fs')
const [npmRoot, file, ...specs] = process.argv.slice(2)
const pick = require(path.join(npmRoot, 'npm', 'node_modules', 'npm-pick-manifest'))
const doc = JSON.parse(fs.readFileSync(file, 'utf8'))
const out = {}
for (const spec of specs) {
  try {
    const m = pick(doc, spec, { nodeVersion: '99.0.0' })
    out[spec] = m ? m.version : 'ERR none'
  } catch (e) {
    out[spec] = 'ERR ' + (e.code || e.message)
  }
}
process.stdout.write(JSON.stringify(out))
