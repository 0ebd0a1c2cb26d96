// Validates every line of an event log with the official CloudEvents JavaScript SDK:
// each line must parse as a structured-mode CloudEvent and pass the SDK's validation.
//   node cloudevents_validate.js LOG MODULE_DIR
'use strict';
const fs = require('fs');
const { HTTP } = require(process.argv[3]);
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.length > 0);
let n = 0;
for (let i = 0; i < lines.length; i++) {
  try {
    const ev = HTTP.toEvent({
      headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
      body: lines[i],
    });
    if (Array.isArray(ev)) throw new Error('a batch, not one event');
    ev.validate();
    if (ev.specversion !== '1.0') throw new Error('specversion ' + ev.specversion);
    n++;
  } catch (e) {
    console.error(`line ${i + 1}: ${e.message} ${JSON.stringify(e.errors || '')}`);
    process.exit(1);
  }
}
console.log(`${n} lines valid CloudEvents`);
