package dev.ferrokv.e2e;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;
import org.tikv.common.BytePairWrapper;
import org.tikv.common.ByteWrapper;
import org.tikv.common.TiConfiguration;
import org.tikv.common.TiSession;
import org.tikv.common.util.BackOffer;
import org.tikv.common.util.ConcreteBackOffer;
import org.tikv.kvproto.Kvrpcpb.KvPair;
import org.tikv.raw.RawKVClient;
import org.tikv.shade.com.google.protobuf.ByteString;
import org.tikv.txn.KVClient;
import org.tikv.txn.TwoPhaseCommitter;

/**
 * Drives the official Java client as its documentation shows: RawKV put/get/batch/scan/delete
 * and a transactional two-phase commit read back through the transactional KV client. Every
 * check that fails throws; the program prints "JAVA CLIENT OK" and exits 0 when all pass.
 * Placement endpoints come from FERROKV_PD (comma-separated host:port).
 */
public final class JavaClientCheck {
  private JavaClientCheck() {}

  public static void main(String[] args) throws Exception {
    String pd = System.getenv("FERROKV_PD");
    if (pd == null || pd.isEmpty()) {
      throw new IllegalStateException("FERROKV_PD is not set");
    }
    String prefix = "java-" + Long.toHexString(System.nanoTime()) + "/";
    raw(pd, prefix);
    txn(pd, prefix);
    System.out.println("JAVA CLIENT OK");
    // The client's gRPC threads are not all daemons.
    System.exit(0);
  }

  static ByteString bs(String s) {
    return ByteString.copyFromUtf8(s);
  }

  static void check(boolean ok, String what) {
    if (!ok) {
      throw new AssertionError(what);
    }
    System.out.println("ok: " + what);
  }

  static void raw(String pd, String p) throws Exception {
    TiConfiguration conf = TiConfiguration.createRawDefault(pd);
    try (TiSession session = TiSession.create(conf);
        RawKVClient client = session.createRawClient()) {
      client.put(bs(p + "k1"), bs("Hello"));
      Optional<ByteString> got = client.get(bs(p + "k1"));
      check(got.isPresent() && got.get().toStringUtf8().equals("Hello"), "raw get after put");
      check(!client.get(bs(p + "absent")).isPresent(), "raw get of an absent key is empty");

      Map<ByteString, ByteString> batch = new LinkedHashMap<>();
      for (int i = 2; i <= 6; i++) {
        batch.put(bs(p + "k" + i), bs("v" + i));
      }
      client.batchPut(batch);
      List<KvPair> pairs = client.batchGet(Arrays.asList(bs(p + "k2"), bs(p + "k9"), bs(p + "k5")));
      check(pairs.size() == 2, "raw batch get returns the present keys only: " + pairs.size());

      List<KvPair> scanned = client.scan(bs(p + "k1"), bs(p + "k6"), 100);
      List<String> keys =
          scanned.stream().map(kv -> kv.getKey().toStringUtf8()).collect(Collectors.toList());
      check(
          keys.equals(Arrays.asList(p + "k1", p + "k2", p + "k3", p + "k4", p + "k5")),
          "raw scan [k1, k6) in order: " + keys);
      check(client.scan(bs(p + "k1"), bs(p + "k6"), 2).size() == 2, "raw scan honours its limit");

      client.delete(bs(p + "k1"));
      check(!client.get(bs(p + "k1")).isPresent(), "raw get after delete is empty");
      client.deleteRange(bs(p + "k2"), bs(p + "k5"));
      keys =
          client.scan(bs(p), bs(p + "~"), 100).stream()
              .map(kv -> kv.getKey().toStringUtf8())
              .collect(Collectors.toList());
      check(keys.equals(Arrays.asList(p + "k5", p + "k6")), "raw delete range [k2, k5): " + keys);
    }
  }

  static void txn(String pd, String p) throws Exception {
    TiConfiguration conf = TiConfiguration.createDefault(pd);
    try (TiSession session = TiSession.create(conf)) {
      byte[] primary = (p + "txn1").getBytes(StandardCharsets.UTF_8);
      byte[] secondary = (p + "txn2").getBytes(StandardCharsets.UTF_8);
      long before = session.getTimestamp().getVersion();
      long startTS = session.getTimestamp().getVersion();
      try (TwoPhaseCommitter committer = new TwoPhaseCommitter(session, startTS)) {
        BackOffer bo = ConcreteBackOffer.newCustomBackOff(5000);
        committer.prewritePrimaryKey(bo, primary, "val1".getBytes(StandardCharsets.UTF_8));
        List<BytePairWrapper> pairs =
            Arrays.asList(new BytePairWrapper(secondary, "val2".getBytes(StandardCharsets.UTF_8)));
        committer.prewriteSecondaryKeys(primary, pairs.iterator(), 5000);
        long commitTS = session.getTimestamp().getVersion();
        committer.commitPrimaryKey(bo, primary, commitTS);
        List<ByteWrapper> keys = Arrays.asList(new ByteWrapper(secondary));
        committer.commitSecondaryKeys(keys.iterator(), commitTS, 5000);
      }
      try (KVClient kv = session.createKVClient()) {
        long version = session.getTimestamp().getVersion();
        ByteString k1 = ByteString.copyFrom(primary);
        ByteString k2 = ByteString.copyFrom(secondary);
        check(kv.get(k1, version).toStringUtf8().equals("val1"), "txn get of the primary");
        check(kv.get(k2, version).toStringUtf8().equals("val2"), "txn get of the secondary");
        check(kv.get(k1, before).isEmpty(), "a snapshot before the commit does not see it");
        BackOffer bo = ConcreteBackOffer.newCustomBackOff(5000);
        List<KvPair> got = kv.batchGet(bo, Arrays.asList(k1, k2), version);
        check(got.size() == 2, "txn batch get of both keys: " + got.size());
        List<KvPair> scanned = kv.scan(k1, bs(p + "txn3"), version);
        check(scanned.size() == 2, "txn scan of both keys: " + scanned.size());
      }
    }
  }
}
