// The workbench API contract: method names, schemas, events, errors and the client.
export * from './methods.js';
export * from './contract.js';
export * from './client.js';
export * from './bridge.js';
export * as schemas from './schemas.js';
