export { MembersModule } from './lib/members.module';
