export { ApprovalsModule } from './lib/approvals.module';
