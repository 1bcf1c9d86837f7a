#pragma once
/// coray: Ray's model -- remote tasks, stateful actors, an immutable shared-memory object
/// store, co_await-able object refs -- for C++20, with worker processes that cost microseconds.

#include <coray/actor.hpp>
#include <coray/actor_pool.hpp>
#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/errors.hpp>
#include <coray/generator.hpp>
#include <coray/manager.hpp>
#include <coray/metrics.hpp>
#include <coray/mutex.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_store.hpp>
#include <coray/object_view.hpp>
#include <coray/pipe.hpp>
#include <coray/placement_group.hpp>
#include <coray/pool.hpp>
#include <coray/process.hpp>
#include <coray/processes.hpp>
#include <coray/progress.hpp>
#include <coray/queue.hpp>
#include <coray/resources.hpp>
#include <coray/result_stream.hpp>
#include <coray/returns.hpp>
#include <coray/runtime.hpp>
#include <coray/runtime_context.hpp>
#include <coray/shared_memory.hpp>
#include <coray/shared_value.hpp>
#include <coray/sleep.hpp>
#include <coray/state.hpp>
#include <coray/sync_wait.hpp>
#include <coray/synchronize.hpp>
#include <coray/task.hpp>
#include <coray/version.hpp>
