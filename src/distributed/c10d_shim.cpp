// The C ABI flarecast uses to join torch's c10d engine: a TCPStore rendezvous, a Gloo
// (or, where built with FLARECAST_NCCL, NCCL) process group, and the three collectives
// training needs. Every call catches C++ exceptions and hands back one line of text;
// every wait is bounded by the group's timeout.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FLARECAST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shim_error.h"

using flarecast_shim::message;

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// Waits for one piece of work, within the group's timeout.
void finish(Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(g->timeout)) {
    throw std::runtime_error("the collective did not complete in time");
  }
}

}  // namespace

extern "C" {

int fc_nccl_built() {
#ifdef FLARECAST_NCCL
  return 1;
#else
  return 0;
#endif
}

// Connects to (or, with `serve_store`, hosts) the TCPStore at host:port, then forms the
// group of `world` ranks. Gloo binds to `gloo_iface` if given, else to the address of
// `gloo_host` if given, else to this machine's hostname. Returns NULL and sets *err on
// failure.
void* fc_group_new(const char* host, int port, int rank, int world, int serve_store,
                   int nccl, long long timeout_ms, const char* prefix, const char* gloo_iface,
                   const char* gloo_host, char** err) {
  // c10d logs every retry and failure with a backtrace on stderr; flarecast reports
  // failures itself in one line. TORCH_CPP_LOG_LEVEL, where set, still decides.
  if (!std::getenv("TORCH_CPP_LOG_LEVEL")) {
    FLAGS_caffe2_log_level = 3;  // FATAL only
  }
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = serve_store != 0;
    so.numWorkers = world;
    // Every rank counts itself in; the server waits for all of them.
    so.waitWorkers = true;
    so.timeout = timeout;
    so.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto g = new Group{store, {}, timeout};
    try {
      if (nccl) {
#ifdef FLARECAST_NCCL
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout;
        g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
        throw std::runtime_error("this build has no NCCL");
#endif
      } else {
        auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
        if (gloo_iface) {
          opts->devices.push_back(
              c10d::ProcessGroupGloo::createDeviceForInterface(std::string(gloo_iface)));
        } else if (gloo_host) {
          opts->devices.push_back(
              c10d::ProcessGroupGloo::createDeviceForHostname(std::string(gloo_host)));
        } else {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
      }
    } catch (...) {
      delete g;
      throw;
    }
    return g;
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = message("unknown C++ exception");
  }
  return nullptr;
}

void fc_group_free(void* group) { delete static_cast<Group*>(group); }

void fc_error_free(char* err) { free(err); }

// Sums `tensor` (an at::Tensor*) over the group, in place.
int fc_allreduce_sum(void* group, void* tensor, char** err) {
  try {
    auto g = static_cast<Group*>(group);
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = g->timeout;
    finish(g, g->backend->allreduce(ts, o));
    // Gloo wrote the tensor behind libtorch's version counter.
    ts[0].unsafeGetTensorImpl()->bump_version();
    return 0;
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = message("unknown C++ exception");
  }
  return -1;
}

// Copies `tensor` of rank `root` into every rank's `tensor`, in place.
int fc_broadcast(void* group, void* tensor, int root, char** err) {
  try {
    auto g = static_cast<Group*>(group);
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    finish(g, g->backend->broadcast(ts, o));
    // Gloo wrote the tensor behind libtorch's version counter: weights derived from it
    // (model::prepared) are remade.
    ts[0].unsafeGetTensorImpl()->bump_version();
    return 0;
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = message("unknown C++ exception");
  }
  return -1;
}

}  // extern "C"
