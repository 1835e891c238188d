export { GroupsModule } from './lib/groups.module';
