import { Body, Controller, Delete, Get, Param, Patch, Post, Query } from '@nestjs/common';
import {
  addMemberRequest,
  memberResponse,
  pageQuery,
  updateMemberRequest,
  type AddMemberRequest,
  type PageQuery,
  type UpdateMemberRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { MembersService } from './members.service';

const TAG = 'members';

@Controller('api/v1/tenants/:tenantId/members')
export class MembersController {
  constructor(private readonly members: MembersService) {}

  @Get()
  @Allow('tenant:members:read')
  @ApiRoute({ tag: TAG, summary: 'List members', response: memberResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.members.list(tenant, query);
  }

  @Post()
  @Allow('tenant:members:write')
  @ApiRoute({ tag: TAG, summary: 'Add a member by email', status: 201, body: addMemberRequest, response: memberResponse, conflicts: true })
  add(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(addMemberRequest)) body: AddMemberRequest) {
    return this.members.add(tenant, body);
  }

  @Patch(':memberId')
  @Allow('tenant:members:write')
  @ApiRoute({ tag: TAG, summary: "Change a member's role (the last owner cannot be demoted)", body: updateMemberRequest, response: memberResponse, conflicts: true })
  changeRole(
    @CurrentTenant() tenant: TenantScope,
    @Param('memberId', IdParamPipe) id: string,
    @Body(new ZodPipe(updateMemberRequest)) body: UpdateMemberRequest,
  ) {
    return this.members.changeRole(tenant, id, body);
  }

  @Delete(':memberId')
  @Allow('tenant:members:write')
  @ApiRoute({ tag: TAG, summary: "Remove a member (the last owner cannot be removed); the agent-client API keys they created are revoked", status: 204, conflicts: true })
  async remove(@CurrentTenant() tenant: TenantScope, @Param('memberId', IdParamPipe) id: string): Promise<void> {
    await this.members.remove(tenant, id);
  }
}
