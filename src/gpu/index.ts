export * from './context';
export * from './errors';
export * from './half';
export * from './tensor';
export * from './workspace';
