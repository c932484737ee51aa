// Drives lwm2m-node-lib's LwM2M client for tests/gateways/test_lwm2m_gateway.py.
// Usage: node client.js <host> <port> <endpoint> <lifetime>
// Registers objects /1/0, /3/0 and /4/0, prints "registered <location>", then reads
// commands from stdin: "update" (prints "updated") and "deregister" (prints
// "deregistered" and exits). Errors print "error <message>".
'use strict';

const readline = require('readline');
const client = require('lwm2m-node-lib').client;

const [host, port, endpoint, lifetime] = process.argv.slice(2);
const config = {
    client: {
        lifetime: lifetime || '300',
        version: '1.0',
        logLevel: 'FATAL',
        observe: { period: 3000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{ name: 'lightweightm2m/text', value: 1541 }],
        writeFormat: 'lightweightm2m/text'
    }
};

function fail(error) {
    console.log('error ' + (error && (error.message || error.name || error)));
}

client.init(config);
let device = null;

function createObjects(paths, callback) {
    if (paths.length === 0) {
        callback();
        return;
    }
    client.registry.create(paths[0], (error) => {
        if (error) {
            fail(error);
            process.exit(1);
        }
        createObjects(paths.slice(1), callback);
    });
}

createObjects(['/1/0', '/3/0', '/4/0'], () => {
    client.register(host, port, '', endpoint, (error, info) => {
        if (error) {
            fail(error);
            process.exit(1);
        }
        device = info;
        console.log('registered ' + info.location);
    });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'update') {
        client.update(device, (error) => console.log(error ? 'error update' : 'updated'));
    } else if (line === 'deregister') {
        client.unregister(device, (error) => {
            console.log(error ? 'error deregister' : 'deregistered');
            process.exit(0);
        });
    }
});
