import { Module } from '@nestjs/common';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { GroupsController } from './groups.controller';
import { GroupsRepository } from './groups.repository';
import { GroupsService } from './groups.service';

@Module({ imports: [PoliciesModule], controllers: [GroupsController], providers: [GroupsRepository, GroupsService] })
export class GroupsModule {}
