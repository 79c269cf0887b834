// The C++ peer for the GetCreator benchmark: a minimal gRPC C++ async server (Debian's
// libgrpc++) answering yaowei.creator.v1.CreatorProfileService/GetCreator from an
// in-memory map of the same synthetic creators bench/load_creators.py makes. Built
// only by `make bench` (Bazel tag "manual"). One completion queue; --threads threads
// drain it (default 1, like the yaowei runtime's one loop thread).
//
//   get_creator_server --listen 127.0.0.1:0 --creators 100000 [--threads N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "yaowei/creator/v1/creator.grpc.pb.h"

using yaowei::creator::v1::Creator;
using yaowei::creator::v1::CreatorProfileService;
using yaowei::creator::v1::GetCreatorRequest;

namespace {

std::unordered_map<std::string, Creator> g_creators;

class CallData {
  public:
    CallData(CreatorProfileService::AsyncService *svc, grpc::ServerCompletionQueue *cq)
        : svc_(svc), cq_(cq), responder_(&ctx_)
    {
        svc_->RequestGetCreator(&ctx_, &req_, &responder_, cq_, cq_, this);
    }

    void Proceed(bool ok)
    {
        if (finished_ || !ok) {
            delete this;
            return;
        }
        new CallData(svc_, cq_);
        finished_ = true;
        auto it = g_creators.find(req_.creator_id());
        if (it == g_creators.end()) {
            responder_.FinishWithError(
                grpc::Status(grpc::StatusCode::NOT_FOUND, "creator not found"), this);
        } else {
            responder_.Finish(it->second, grpc::Status::OK, this);
        }
    }

  private:
    CreatorProfileService::AsyncService *svc_;
    grpc::ServerCompletionQueue *cq_;
    grpc::ServerContext ctx_;
    GetCreatorRequest req_;
    grpc::ServerAsyncResponseWriter<Creator> responder_;
    bool finished_ = false;
};

// The followers bench/load_creators.py gives creator i (Pareto, at most 20 million).
long Followers(long i)
{
    double h = static_cast<double>((i * 2654435761L) % 1000003L) / 1000003.0;
    return std::min(static_cast<long>(1000.0 * std::pow(1.0 - h, -1.07)), 20000000L);
}

const char *Arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (std::strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return def;
}

} // namespace

int main(int argc, char **argv)
{
    std::string listen = Arg(argc, argv, "--listen", "127.0.0.1:0");
    long creators = std::atol(Arg(argc, argv, "--creators", "100000"));
    int threads = std::atoi(Arg(argc, argv, "--threads", "1"));
    const char *cats[] = {"beauty", "fashion", "food", "travel", "home", "tech", "parenting",
                          "fitness"};
    g_creators.reserve(static_cast<size_t>(creators));
    for (long i = 0; i < creators; i++) {
        char id[32];
        std::snprintf(id, sizeof id, "creator-%06ld", i);
        Creator c;
        c.set_creator_id(id);
        c.set_display_name("Creator " + std::to_string(i));
        char region[16];
        std::snprintf(region, sizeof region, "CN-%02ld", i % 34);
        c.set_region(region);
        c.add_categories(cats[i % 8]);
        c.set_followers(Followers(i));
        c.mutable_create_time()->set_seconds(1764201600);
        c.set_status(yaowei::creator::v1::CREATOR_STATUS_ACTIVE);
        g_creators.emplace(id, std::move(c));
    }
    CreatorProfileService::AsyncService service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::ServerCompletionQueue> cq = builder.AddCompletionQueue();
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server) {
        std::fprintf(stderr, "cannot listen on %s\n", listen.c_str());
        return 1;
    }
    std::printf("port %d\n", port);
    std::fflush(stdout);
    for (int i = 0; i < 64; i++) {
        new CallData(&service, cq.get());
    }
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
        pool.emplace_back([&cq] {
            void *tag;
            bool ok;
            while (cq->Next(&tag, &ok)) {
                static_cast<CallData *>(tag)->Proceed(ok);
            }
        });
    }
    for (auto &t : pool) {
        t.join();
    }
    return 0;
}
