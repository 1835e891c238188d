import { Module } from '@nestjs/common';
import { PoliciesController } from './policies.controller';
import { PoliciesRepository } from './policies.repository';
import { PoliciesService } from './policies.service';
import { PolicySnapshotWriter } from './policy-snapshot.writer';
import { SnapshotsController } from './snapshots.controller';
import { SnapshotsService } from './snapshots.service';

/**
 * Policy source (rules, default effect), its compiled snapshots, rollback and simulation. Exports the snapshot
 * writer: every feature whose change affects enforcement (members, groups, agent clients, upstreams) rebuilds the snapshot
 * in its own transaction.
 */
@Module({
  controllers: [PoliciesController, SnapshotsController],
  providers: [PoliciesRepository, PoliciesService, SnapshotsService, PolicySnapshotWriter],
  exports: [PolicySnapshotWriter],
})
export class PoliciesModule {}
