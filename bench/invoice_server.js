// The seed's invoice_server.js (seed/mtls-tutorial.txt, step 4), as bench/compare
// runs it: the same options and handler; only the file paths come from the
// command line, it listens on a free port of 127.0.0.1 and says which, and
// idle keep-alive connections are held as long as nginx and twoway hold them.
//
//   usage: node invoice_server.js CA_CERT SERVER_CERT SERVER_KEY
const https = require('https');
const fs = require('fs');
const hostname = '127.0.0.1';
const port = 0;
const [caFile, certFile, keyFile] = process.argv.slice(2);
const options = {
  ca: fs.readFileSync(caFile),
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
  rejectUnauthorized: true, // if certificate is not signed by the CA, drop connection
  requestCert: true, // the client has to send its own certificate
};
const server = https.createServer(options, (req, res) => {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json');
  const userData = JSON.stringify({
    firstname: 'John',
    lastname: 'Ji',
    email: 'john.ji@example.com',
    invoice_number: '00095234',
    invoice_price: '10USD',
  });
  res.end(userData);
});
// Node closes idle keep-alive connections after 5 s by default; the idle
// memory measurement holds them longer (nginx and twoway are set alike).
server.keepAliveTimeout = 300 * 1000;
server.on('error', (e) => console.log(e));
server.listen(port, hostname, () => {
  console.log(`listening on https://${hostname}:${server.address().port}/`);
});
