/**
 * A StreamStore that hands every call to `inner`: the base of the stores that wrap another
 * and change only some calls (the cluster's ClusterStore refuses writes and reads where the
 * node may not serve them; the API's GatedReadsStore takes reads in turn).
 */
import type {
  ExpectedVersion,
  NewEvent,
  ReadAllOptions,
  ReadAllResult,
  ReadStreamOptions,
  ReadStreamResult,
  StoreStats,
  StreamMetadata,
  StreamStore,
  WriteResult,
} from "./types.js";

export class ForwardingStore implements StreamStore {
  constructor(readonly inner: StreamStore) {}

  open(): Promise<void> {
    return this.inner.open();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  append(streamId: string, expected: ExpectedVersion, events: NewEvent[]): Promise<WriteResult> {
    return this.inner.append(streamId, expected, events);
  }

  delete(streamId: string, expected: ExpectedVersion, hard: boolean): Promise<WriteResult> {
    return this.inner.delete(streamId, expected, hard);
  }

  readStream(streamId: string, options: ReadStreamOptions): Promise<ReadStreamResult> {
    return this.inner.readStream(streamId, options);
  }

  readAll(options: ReadAllOptions): Promise<ReadAllResult> {
    return this.inner.readAll(options);
  }

  getMetadata(streamId: string): Promise<StreamMetadata | null> {
    return this.inner.getMetadata(streamId);
  }

  get commitPosition(): number {
    return this.inner.commitPosition;
  }

  onCommit(listener: (commitPosition: number) => void): () => void {
    return this.inner.onCommit(listener);
  }

  stats(): StoreStats {
    return this.inner.stats();
  }
}
