import { Body, Controller, Delete, Get, Param, Patch, Post, Query } from '@nestjs/common';
import {
  addGroupMemberRequest,
  createGroupRequest,
  groupMemberResponse,
  groupResponse,
  pageQuery,
  updateGroupRequest,
  type AddGroupMemberRequest,
  type CreateGroupRequest,
  type PageQuery,
  type UpdateGroupRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { GroupsService } from './groups.service';

const TAG = 'groups';

@Controller('api/v1/tenants/:tenantId/groups')
export class GroupsController {
  constructor(private readonly groups: GroupsService) {}

  @Get()
  @Allow('tenant:groups:read')
  @ApiRoute({ tag: TAG, summary: 'List groups', response: groupResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.groups.list(tenant, query);
  }

  @Post()
  @Allow('tenant:groups:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Create a group; policies refer to it by externalId (writes a new policy snapshot)',
    status: 201,
    body: createGroupRequest,
    response: groupResponse,
    conflicts: true,
  })
  create(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(createGroupRequest)) body: CreateGroupRequest) {
    return this.groups.create(tenant, body);
  }

  @Get(':groupId')
  @Allow('tenant:groups:read')
  @ApiRoute({ tag: TAG, summary: 'Get a group', response: groupResponse })
  get(@CurrentTenant() tenant: TenantScope, @Param('groupId', IdParamPipe) id: string) {
    return this.groups.get(tenant, id);
  }

  @Patch(':groupId')
  @Allow('tenant:groups:write')
  @ApiRoute({ tag: TAG, summary: "Rename a group (display name only; the externalId policies use doesn't change)", body: updateGroupRequest, response: groupResponse })
  rename(@CurrentTenant() tenant: TenantScope, @Param('groupId', IdParamPipe) id: string, @Body(new ZodPipe(updateGroupRequest)) body: UpdateGroupRequest) {
    return this.groups.rename(tenant, id, body);
  }

  @Delete(':groupId')
  @Allow('tenant:groups:write')
  @ApiRoute({ tag: TAG, summary: 'Delete a group (409 naming each enabled rule that still refers to it)', status: 204, conflicts: true })
  async delete(@CurrentTenant() tenant: TenantScope, @Param('groupId', IdParamPipe) id: string): Promise<void> {
    await this.groups.delete(tenant, id);
  }

  @Get(':groupId/members')
  @Allow('tenant:groups:read')
  @ApiRoute({ tag: TAG, summary: "List a group's members", response: groupMemberResponse, paged: true })
  listMembers(@CurrentTenant() tenant: TenantScope, @Param('groupId', IdParamPipe) id: string, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.groups.listMembers(tenant, id, query);
  }

  @Post(':groupId/members')
  @Allow('tenant:groups:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Add a tenant member to the group (writes a new policy snapshot)',
    status: 201,
    body: addGroupMemberRequest,
    response: groupMemberResponse,
    conflicts: true,
  })
  addMember(
    @CurrentTenant() tenant: TenantScope,
    @Param('groupId', IdParamPipe) id: string,
    @Body(new ZodPipe(addGroupMemberRequest)) body: AddGroupMemberRequest,
  ) {
    return this.groups.addMember(tenant, id, body);
  }

  @Delete(':groupId/members/:userId')
  @Allow('tenant:groups:write')
  @ApiRoute({ tag: TAG, summary: 'Remove a user from the group (writes a new policy snapshot)', status: 204, conflicts: true })
  async removeMember(
    @CurrentTenant() tenant: TenantScope,
    @Param('groupId', IdParamPipe) id: string,
    @Param('userId', IdParamPipe) userId: string,
  ): Promise<void> {
    await this.groups.removeMember(tenant, id, userId);
  }
}
