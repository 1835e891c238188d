export { inexactNumberIn, inexactNumbersByElement } from './lib/exact-numbers';
