export { ApprovalsModule } from './lib/approvals.module';
export { ApprovalsService } from './lib/approvals.service';
