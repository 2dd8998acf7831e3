// Extract tarballs with the real node-tar exactly as npm (pacote) does, and list what was written.
// usage: node nodetar_extract.js <path to node-tar> <jobs.json>
// jobs.json: [{"file": "...", "cwd": "..."}]; prints [{"files": {path: {sha256, mode}}, "error", "warnings"}]
'use strict'
const fs = require('fs')
const path = require('path')
const crypto = require('crypto')
const tar = require(process.argv[2])

// pacote/lib/fetcher.js #tarxOptions, without the manifest-dependent mode fix-up.
function options (cwd, warnings) {
  const sawIgnores = new Set()
  return {
    cwd,
    noChmod: true,
    noMtime: true,
    filter: (name, entry) => {
      if (/Link$/.test(entry.type)) {
        return false
      }
      if (/File$/.test(entry.type)) {
        const base = path.basename(entry.path)
        if (base === '.npmignore') {
          sawIgnores.add(entry.path)
        } else if (base === '.gitignore') {
          const ni = entry.path.replace(/\.gitignore$/, '.npmignore')
          if (sawIgnores.has(ni)) {
            return false
          }
          entry.path = ni
        }
        return true
      }
    },
    strip: 1,
    onwarn: (code, msg) => warnings.push(`${code}: ${msg}`),
    umask: 0o22,
    preserveOwner: false,
  }
}

function walk (root, rel, out) {
  for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
    const r = rel ? rel + '/' + name : name
    const st = fs.lstatSync(path.join(root, r))
    if (st.isDirectory()) {
      walk(root, r, out)
    } else if (st.isFile()) {
      const data = fs.readFileSync(path.join(root, r))
      out[r] = { sha256: crypto.createHash('sha256').update(data).digest('hex'), mode: st.mode & 0o7777 }
    } else {
      out[r] = { sha256: 'special', mode: st.mode & 0o7777 }
    }
  }
  return out
}

let crash = null
process.on('uncaughtException', er => crash && crash(er))

async function main () {
  const jobs = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))
  const results = []
  for (const job of jobs) {
    const warnings = []
    let error = null
    fs.mkdirSync(job.cwd, { recursive: true })
    try {
      // node-tar can also throw from a callback (for instance on a NUL in a path): that
      // crashes npm, so it counts as an error of this job.
      await new Promise((resolve, reject) => {
        crash = reject
        tar.x({ file: job.file, ...options(job.cwd, warnings) }).then(resolve, reject)
      })
    } catch (er) {
      error = String(er && er.message || er)
    }
    results.push({ files: walk(job.cwd, '', {}), error, warnings })
  }
  process.stdout.write(JSON.stringify(results))
}

main().catch(er => { console.error(er); process.exit(1) })
