import { Module } from '@nestjs/common';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { MembersController } from './members.controller';
import { MembersRepository } from './members.repository';
import { MembersService } from './members.service';

@Module({ imports: [PoliciesModule], controllers: [MembersController], providers: [MembersRepository, MembersService] })
export class MembersModule {}
