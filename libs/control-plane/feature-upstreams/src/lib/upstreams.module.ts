import { Module, type DynamicModule } from '@nestjs/common';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { UpstreamToolsController } from './upstream-tools.controller';
import { UpstreamToolsRepository } from './upstream-tools.repository';
import { UpstreamToolsService } from './upstream-tools.service';
import { UpstreamsController } from './upstreams.controller';
import { UPSTREAMS_OPTIONS, type UpstreamsOptions } from './upstreams.options';
import { UpstreamsRepository } from './upstreams.repository';
import { UpstreamsService } from './upstreams.service';

@Module({})
export class UpstreamsModule {
  static forRoot(options: UpstreamsOptions): DynamicModule {
    return {
      module: UpstreamsModule,
      imports: [PoliciesModule],
      controllers: [UpstreamsController, UpstreamToolsController],
      providers: [
        { provide: UPSTREAMS_OPTIONS, useValue: options },
        UpstreamsRepository,
        UpstreamsService,
        UpstreamToolsRepository,
        UpstreamToolsService,
      ],
    };
  }
}
