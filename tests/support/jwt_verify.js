// Verifies a workload identity token with the `jose` library, the way a relying party would:
// signature against the JWKS `cellos-reactor jwks` printed, issuer, audience and time.
//   node jwt_verify.js MODULE_DIR JWKS_FILE TOKEN AUDIENCE ISSUER [AT_UNIX_SECONDS]
// Prints {"ok":true,"payload":{...},"header":{...}} or {"ok":false,"code":...,"claim":...}.
'use strict';
const fs = require('fs');
const [moduleDir, jwksFile, token, audience, issuer, at] = process.argv.slice(2);
const jose = require(moduleDir);
(async () => {
  const jwks = jose.createLocalJWKSet(JSON.parse(fs.readFileSync(jwksFile, 'utf8')));
  const options = { audience, issuer, algorithms: ['EdDSA'] };
  if (at) options.currentDate = new Date(Number(at) * 1000);
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, options);
    console.log(JSON.stringify({ ok: true, payload, header: protectedHeader }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code, claim: e.claim || null, message: e.message }));
  }
})();
