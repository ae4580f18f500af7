/*
 * Test vectors for our `cooperative-sticky` and `sticky` assignors, computed
 * with Apache Kafka's own classes (kafka-clients, the version in
 * scripts/kafka/pom.xml). Run by scripts/sticky-vectors.sh (make
 * sticky-vectors); writes one JSON object per line:
 *
 *   - each member's state as a Java consumer would hold it (topics, owned
 *     partitions, generation, the assignor's generation and previous
 *     assignment), the assignor userData Kafka's assignor writes for it and
 *     the full ConsumerProtocol subscription bytes;
 *   - the partition counts the leader sees;
 *   - "java": what the assignor returns when a Java leader runs it, exactly as
 *     ConsumerCoordinator.onLeaderElected does (subscriptions decoded from the
 *     bytes into a HashMap in JoinGroup order, then
 *     assign(Cluster, GroupSubscription)), or the exception it throws;
 *   - "expected": null when our assignor must return "java"; otherwise
 *     Kafka's result (same class) for the input with the corrections our
 *     assignor makes ("corrected" says which; see the sticky module docs);
 *     "expected_invalid" says why that result is still not a valid
 *     assignment, if it is not: then the test only checks that ours is.
 *
 * Everything is derived from a fixed seed: the same jar gives the same file.
 * This file is a test tool, not part of either service.
 */

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Assignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupSubscription;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.clients.consumer.internals.ConsumerProtocol;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;

public final class StickyVectors {
    static final String COOP = "cooperative-sticky";
    static final String STICKY = "sticky";
    static final Node NODE = new Node(0, "localhost", 9092);

    /** One member as a Java consumer would hold it when it joins. */
    static final class Member {
        String id;
        String instance;                 // group.instance.id, or null
        List<String> topics = new ArrayList<>();
        List<TopicPartition> owned = new ArrayList<>();     // ownedPartitions field
        int generation = -1;             // generationId field
        Integer assignorGeneration;      // null: onAssignment never called
        List<TopicPartition> previous;   // sticky: what onAssignment got
        short version = 3;               // ConsumerProtocolSubscription version
        String rack;
        byte[] rawUserData;              // hostile userData, instead of the assignor's

        Member(String id) {
            this.id = id;
        }

        Member copy() {
            Member m = new Member(id);
            m.instance = instance;
            m.topics = new ArrayList<>(topics);
            m.owned = new ArrayList<>(owned);
            m.generation = generation;
            m.assignorGeneration = assignorGeneration;
            m.previous = previous == null ? null : new ArrayList<>(previous);
            m.version = version;
            m.rack = rack;
            m.rawUserData = rawUserData;
            return m;
        }
    }

    static final class Case {
        final String name;
        final String assignor;
        final Map<String, Integer> partitions = new TreeMap<>();
        final List<Member> members = new ArrayList<>();

        Case(String name, String assignor) {
            this.name = name;
            this.assignor = assignor;
        }
    }

    /** Kafka's result for one input: the assignment or the exception. */
    static final class Outcome {
        Map<String, List<TopicPartition>> assignment;
        String error;
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = args.length > 0
            ? new PrintStream(args[0], StandardCharsets.UTF_8)
            : new PrintStream(System.out, true, StandardCharsets.UTF_8);
        List<Case> cases = new ArrayList<>();
        edgeCases(cases);
        Random random = new Random(429);
        for (int i = 0; i < 200; i++)
            simulate(random, "random-" + i, random.nextInt(10) < 7 ? COOP : STICKY, false, cases);
        for (int i = 0; i < 400; i++)
            cases.add(scrambled(random, "scrambled-" + i, i % 5 == 4 ? STICKY : COOP, random.nextInt(5) == 0,
                random.nextInt(3) == 0));
        // Members that changed their subscription since their last
        // assignment, all in one generation (eager members' userData still
        // lists what they no longer subscribe to).
        for (int i = 0; i < 150; i++)
            cases.add(scrambled(random, "resubscribed-" + i, i % 2 == 0 ? STICKY : COOP, true, true));
        for (int i = 0; i < 60; i++)
            simulate(random, "hostile-" + i, random.nextInt(10) < 8 ? COOP : STICKY, true, cases);
        for (int i = 0; i < 4; i++)
            simulate(random, "large-" + i, i == 3 ? STICKY : COOP, false, cases, 20 + random.nextInt(40), 6 + random.nextInt(10), 60);
        for (Case c : cases)
            out.println(toJson(c));
        out.close();
        System.err.println("sticky-vectors: " + cases.size() + " cases");
    }

    // ------------------------------------------------------------- running Kafka

    static ConsumerPartitionAssignor assignor(String name) {
        return COOP.equals(name) ? new CooperativeStickyAssignor() : new StickyAssignor();
    }

    @SuppressWarnings("removal")   // the only way to give onAssignment a generation
    static ConsumerGroupMetadata metadata(Member m, int generation) {
        return new ConsumerGroupMetadata("group", generation, m.id, Optional.ofNullable(m.instance));
    }

    /** The userData the member's own assignor instance writes into its subscription. */
    static ByteBuffer userData(String assignorName, Member m) {
        if (m.rawUserData != null)
            return ByteBuffer.wrap(m.rawUserData);
        ConsumerPartitionAssignor a = assignor(assignorName);
        if (m.assignorGeneration != null) {
            List<TopicPartition> previous = m.previous != null ? m.previous : m.owned;
            a.onAssignment(new Assignment(previous), metadata(m, m.assignorGeneration));
        }
        return a.subscriptionUserData(new HashSet<>(m.topics));
    }

    static List<byte[]> metadata(String assignorName, List<Member> members) {
        List<byte[]> out = new ArrayList<>();
        for (Member m : members)
            out.add(subscriptionBytes(assignorName, m));
        return out;
    }

    static byte[] subscriptionBytes(String assignorName, Member m) {
        Subscription s = new Subscription(m.topics, userData(assignorName, m), m.owned, m.generation,
            Optional.ofNullable(m.rack));
        return toArray(ConsumerProtocol.serializeSubscription(s, m.version));
    }

    static Cluster cluster(Map<String, Integer> partitions) {
        List<PartitionInfo> infos = new ArrayList<>();
        partitions.forEach((topic, n) -> {
            for (int p = 0; p < n; p++)
                infos.add(new PartitionInfo(topic, p, NODE, new Node[]{NODE}, new Node[]{NODE}));
        });
        return new Cluster("cluster", List.of(NODE), infos, Set.of(), Set.of());
    }

    /** What ConsumerCoordinator.onLeaderElected does with the JoinGroup members. */
    static Outcome run(String assignorName, Map<String, Integer> partitions, List<Member> members,
                       List<byte[]> metadata) {
        Map<String, Subscription> subscriptions = new HashMap<>();
        for (int i = 0; i < members.size(); i++) {
            Subscription s = ConsumerProtocol.deserializeSubscription(ByteBuffer.wrap(metadata.get(i)));
            s.setGroupInstanceId(Optional.ofNullable(members.get(i).instance));
            subscriptions.put(members.get(i).id, s);
        }
        Outcome o = new Outcome();
        try {
            Map<String, Assignment> result = assignor(assignorName)
                .assign(cluster(partitions), new GroupSubscription(subscriptions))
                .groupAssignment();
            o.assignment = new TreeMap<>();
            result.forEach((member, a) -> {
                if (a.userData() != null)
                    throw new IllegalStateException("assignment userData is expected to be null");
                o.assignment.put(member, a.partitions());
            });
        } catch (RuntimeException e) {
            o.error = e.getClass().getSimpleName() + ": " + e.getMessage();
        }
        return o;
    }

    /** Why Kafka's result is not a valid assignment, or null if it is. */
    static String invalid(Map<String, Integer> partitions, List<Member> members, Outcome o) {
        if (o.error != null)
            return null;
        Map<String, Member> byId = new HashMap<>();
        members.forEach(m -> byId.put(m.id, m));
        Set<TopicPartition> seen = new HashSet<>();
        for (Map.Entry<String, List<TopicPartition>> e : o.assignment.entrySet()) {
            for (TopicPartition tp : e.getValue()) {
                Integer n = partitions.get(tp.topic());
                if (n == null || tp.partition() < 0 || tp.partition() >= n)
                    return "assigns nonexistent partition " + tp;
                if (!seen.add(tp))
                    return "assigns " + tp + " twice";
                if (!byId.get(e.getKey()).topics.contains(tp.topic()))
                    return "assigns " + tp + " to " + e.getKey() + ", which does not subscribe to it";
            }
        }
        return null;
    }

    // ------------------------------------------------------------- deviations

    /**
     * The two corrections our assignor always makes, as they change nothing
     * where Kafka's result is valid: owned partitions (or a sticky previous
     * assignment) beyond the topic's partition count are dropped, and a
     * topic listed twice in one subscription counts once. Null when neither
     * applies.
     */
    static List<Member> alwaysCorrected(Map<String, Integer> partitions, List<Member> members, List<String> why) {
        boolean changed = false;
        List<Member> out = new ArrayList<>();
        for (Member m : members) {
            Member c = m.copy();
            List<TopicPartition> owned = inRange(partitions, m.owned);
            if (owned.size() != m.owned.size()) {
                c.owned = owned;
                changed |= note(why, "owned partition beyond the topic's partition count");
            }
            if (m.previous != null && m.rawUserData == null) {
                List<TopicPartition> previous = inRange(partitions, m.previous);
                if (previous.size() != m.previous.size()) {
                    c.previous = previous;
                    changed |= note(why, "owned partition beyond the topic's partition count");
                }
            }
            List<String> topics = new ArrayList<>(new LinkedHashSet<>(m.topics));
            if (topics.size() != m.topics.size()) {
                c.topics = topics;
                changed |= note(why, "duplicate topic in a subscription");
            }
            out.add(c);
        }
        return changed ? out : null;
    }

    /**
     * The correction made only when Kafka's result is invalid: a member
     * subscribed to nothing is not "subscribed to the same topics" as the
     * others (Kafka's check is fooled when it comes first in HashMap order).
     * Expressed as a subscription to a topic without metadata, which Kafka
     * handles like no topic at all but compares properly. Null if no member
     * is subscribed to nothing while others are subscribed to something.
     */
    static List<Member> emptySubscriptionsCorrected(List<Member> members, List<String> why) {
        if (members.stream().noneMatch(m -> !m.topics.isEmpty()))
            return null;
        boolean changed = false;
        List<Member> out = new ArrayList<>();
        for (Member m : members) {
            Member c = m.copy();
            if (m.topics.isEmpty()) {
                c.topics = new ArrayList<>(List.of("__no_such_topic__"));
                changed |= note(why, "member subscribed to nothing");
            }
            out.add(c);
        }
        return changed ? out : null;
    }

    static boolean note(List<String> why, String reason) {
        if (!why.contains(reason))
            why.add(reason);
        return true;
    }

    static List<TopicPartition> inRange(Map<String, Integer> partitions, List<TopicPartition> tps) {
        List<TopicPartition> out = new ArrayList<>();
        for (TopicPartition tp : tps) {
            Integer n = partitions.get(tp.topic());
            if (n == null || (tp.partition() >= 0 && tp.partition() < n))
                out.add(tp);
        }
        return out;
    }

    // ------------------------------------------------------------- JSON

    static String toJson(Case c) {
        List<byte[]> metadata = new ArrayList<>();
        StringBuilder members = new StringBuilder("[");
        for (Member m : c.members) {
            ByteBuffer ud = userData(c.assignor, m);
            byte[] bytes = subscriptionBytes(c.assignor, m);
            metadata.add(bytes);
            if (members.length() > 1)
                members.append(',');
            members.append("{\"id\":").append(str(m.id))
                .append(",\"instance\":").append(m.instance == null ? "null" : str(m.instance))
                .append(",\"topics\":").append(strings(m.topics))
                .append(",\"owned\":").append(tps(m.owned))
                .append(",\"generation\":").append(m.generation)
                .append(",\"assignor_generation\":").append(m.assignorGeneration)
                .append(STICKY.equals(c.assignor) ? ",\"previous\":" + (m.previous == null ? "null" : tps(m.previous)) : "")
                .append(",\"version\":").append(m.version)
                .append(",\"rack\":").append(m.rack == null ? "null" : str(m.rack))
                .append(",\"raw_user_data\":").append(m.rawUserData != null)
                .append(",\"user_data\":").append(ud == null ? "null" : str(hex(toArray(ud))))
                .append(",\"subscription\":").append(str(hex(bytes)))
                .append('}');
        }
        members.append(']');

        Outcome java = run(c.assignor, c.partitions, c.members, metadata);
        String javaInvalid = invalid(c.partitions, c.members, java);

        // What our assignor must return: Kafka's result after the corrections
        // it always makes, and if that is still invalid (or throws), after
        // the empty-subscription correction too. If even that is invalid,
        // only validity is checked.
        List<String> why = new ArrayList<>();
        List<Member> input = c.members;
        Outcome expected = java;
        String expectedInvalid = javaInvalid;
        List<Member> fixed = alwaysCorrected(c.partitions, input, why);
        if (fixed != null) {
            input = fixed;
            expected = run(c.assignor, c.partitions, input, metadata(c.assignor, input));
            expectedInvalid = invalid(c.partitions, input, expected);
        }
        if (expected.error != null || expectedInvalid != null) {
            fixed = emptySubscriptionsCorrected(input, why);
            if (fixed != null) {
                input = fixed;
                expected = run(c.assignor, c.partitions, input, metadata(c.assignor, input));
                expectedInvalid = invalid(c.partitions, input, expected);
            }
        }

        StringBuilder sb = new StringBuilder("{\"name\":").append(str(c.name))
            .append(",\"assignor\":").append(str(c.assignor))
            .append(",\"partitions\":{");
        boolean first = true;
        for (Map.Entry<String, Integer> e : c.partitions.entrySet()) {
            if (!first)
                sb.append(',');
            first = false;
            sb.append(str(e.getKey())).append(':').append(e.getValue());
        }
        sb.append("},\"members\":").append(members)
            .append(",\"java\":").append(outcome(java))
            .append(",\"java_invalid\":").append(javaInvalid == null ? "null" : str(javaInvalid))
            .append(",\"corrected\":").append(why.isEmpty() ? "null" : strings(why))
            .append(",\"expected\":").append(why.isEmpty() ? "null" : outcome(expected))
            .append(",\"expected_invalid\":").append(expectedInvalid == null ? "null" : str(expectedInvalid))
            .append('}');
        return sb.toString();
    }

    static String outcome(Outcome o) {
        if (o.error != null)
            return "{\"error\":" + str(o.error) + "}";
        StringBuilder sb = new StringBuilder("{\"assignment\":{");
        boolean first = true;
        for (Map.Entry<String, List<TopicPartition>> e : o.assignment.entrySet()) {
            if (!first)
                sb.append(',');
            first = false;
            sb.append(str(e.getKey())).append(':').append(tps(e.getValue()));
        }
        return sb.append("}}").toString();
    }

    static String tps(List<TopicPartition> tps) {
        StringBuilder sb = new StringBuilder("[");
        for (TopicPartition tp : tps) {
            if (sb.length() > 1)
                sb.append(',');
            sb.append('[').append(str(tp.topic())).append(',').append(tp.partition()).append(']');
        }
        return sb.append(']').toString();
    }

    static String strings(List<String> xs) {
        StringBuilder sb = new StringBuilder("[");
        for (String x : xs) {
            if (sb.length() > 1)
                sb.append(',');
            sb.append(str(x));
        }
        return sb.append(']').toString();
    }

    static String str(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch == '"' || ch == '\\')
                sb.append('\\').append(ch);
            else if (ch < 0x20 || ch > 0x7e)
                sb.append(String.format("\\u%04x", (int) ch));
            else
                sb.append(ch);
        }
        return sb.append('"').toString();
    }

    static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder();
        for (byte b : bytes)
            sb.append(String.format("%02x", b & 0xff));
        return sb.toString();
    }

    static byte[] toArray(ByteBuffer b) {
        ByteBuffer d = b.duplicate();
        byte[] out = new byte[d.remaining()];
        d.get(out);
        return out;
    }

    // ------------------------------------------------------------- scenarios

    static final String[] TOPIC_POOL = {
        "orders", "payments", "t0", "t1", "t2", "events", "clicks", "Aa", "BB", "a", "b", "c",
        "metrics.v2", "audit_log", "topic-with-a-long-name-0123456789", "x", "y", "z", "logs", "users"
    };

    /** Like the broker's "client.id-UUID", shortened to keep the file small. */
    static String memberId(Random r, String clientId) {
        return clientId + "-" + Integer.toHexString(r.nextInt());
    }

    static void simulate(Random r, String name, String assignorName, boolean hostile, List<Case> out) {
        simulate(r, name, assignorName, hostile, out, 1 + r.nextInt(7), 1 + r.nextInt(4), 12);
    }

    /**
     * A group over several rebalances, each one a case: members join, leave,
     * restart, change subscriptions; partitions and topics appear (and, when
     * hostile, disappear); members come back with what they were assigned.
     * Hostile runs add conflicting claims, stale and huge generations,
     * old subscription versions and broken userData.
     */
    static void simulate(Random r, String name, String assignorName, boolean hostile, List<Case> out,
                         int nMembers, int nTopics, int maxPartitions) {
        List<String> pool = new ArrayList<>(List.of(TOPIC_POOL));
        Collections.shuffle(pool, r);
        Map<String, Integer> partitions = new TreeMap<>();
        List<String> topics = new ArrayList<>();
        for (int i = 0; i < nTopics; i++) {
            topics.add(pool.get(i));
            partitions.put(pool.get(i), 1 + r.nextInt(maxPartitions));
        }
        boolean sameTopics = r.nextInt(10) < 6;
        List<Member> members = new ArrayList<>();
        for (int i = 0; i < nMembers; i++)
            members.add(newMember(r, topics, sameTopics, i));
        int generation = 0;
        int rounds = 1 + r.nextInt(6);
        for (int round = 0; round < rounds; round++) {
            if (round > 0)
                mutate(r, members, topics, partitions, pool, sameTopics, hostile, generation);
            if (hostile)
                hostility(r, members, partitions, generation);
            Case c = new Case(name + "-r" + round, assignorName);
            c.partitions.putAll(partitions);
            for (Member m : members)
                c.members.add(m.copy());
            out.add(c);

            // Everybody comes back from the rebalance with what it got.
            List<byte[]> metadata = new ArrayList<>();
            for (Member m : c.members)
                metadata.add(subscriptionBytes(assignorName, m));
            Outcome o = run(assignorName, c.partitions, c.members, metadata);
            if (o.error != null || invalid(c.partitions, c.members, o) != null)
                return;
            generation++;
            for (Member m : members) {
                List<TopicPartition> got = new ArrayList<>(o.assignment.getOrDefault(m.id, List.of()));
                m.generation = generation;
                m.assignorGeneration = generation;
                m.version = 3;
                m.rawUserData = null;
                if (COOP.equals(assignorName)) {
                    m.owned = got;
                    m.previous = null;
                } else {
                    // Eager: everything is revoked before the next join.
                    m.owned = new ArrayList<>();
                    m.previous = got;
                }
            }
        }
    }

    /**
     * Members subscribed to different topics, each claiming partitions here
     * and there in one of three generations: what a group looks like after
     * members missed rebalances and changed subscriptions. This is what
     * drives the general algorithm's balancing moves, its moves back to
     * older owners and its undoing of earlier moves. Cooperative members
     * revoke what they no longer subscribe to before they join, so claims
     * outside the subscription are only sometimes made: with several
     * generations Kafka's result is then often invalid (see the sticky
     * module docs). With one generation nothing is a previous owner's claim.
     */
    static Case scrambled(Random r, String name, String assignorName, boolean claimsOutsideSubscription,
                          boolean oneGeneration) {
        Case c = new Case(name, assignorName);
        List<String> pool = new ArrayList<>(List.of(TOPIC_POOL));
        Collections.shuffle(pool, r);
        List<String> topics = pool.subList(0, 2 + r.nextInt(5));
        int maxPartitions = r.nextBoolean() ? 8 : 30;
        for (String t : topics)
            c.partitions.put(t, 1 + r.nextInt(maxPartitions));
        int n = 3 + r.nextInt(r.nextBoolean() ? 4 : 14);
        for (int i = 0; i < n; i++) {
            Member m = new Member(memberId(r, "consumer-" + (1 + i)));
            for (String t : topics)
                if (r.nextInt(10) < 6)
                    m.topics.add(t);
            c.partitions.forEach((t, count) -> {
                if (!claimsOutsideSubscription && !m.topics.contains(t))
                    return;
                for (int p = 0; p < count; p++)
                    if (r.nextDouble() < 1.5 / n)
                        m.owned.add(new TopicPartition(t, p));
            });
            m.generation = oneGeneration ? 10 : 10 - r.nextInt(3);
            m.assignorGeneration = m.generation;
            if (STICKY.equals(assignorName)) {
                m.previous = m.owned;
                m.owned = new ArrayList<>();
            }
            c.members.add(m);
        }
        return c;
    }

    static Member newMember(Random r, List<String> topics, boolean sameTopics, int i) {
        boolean isStatic = r.nextInt(5) == 0;
        String instance = isStatic ? "pod-" + r.nextInt(1000) : null;
        Member m = new Member(memberId(r, isStatic ? instance : "consumer-" + (1 + i)));
        m.instance = instance;
        if (r.nextInt(8) == 0)
            m.rack = "rack-" + r.nextInt(3);
        m.topics = sameTopics ? new ArrayList<>(topics) : subset(r, topics);
        return m;
    }

    static List<String> subset(Random r, List<String> topics) {
        List<String> out = new ArrayList<>();
        for (String t : topics)
            if (r.nextBoolean())
                out.add(t);
        if (out.isEmpty() && !topics.isEmpty())
            out.add(topics.get(r.nextInt(topics.size())));
        return out;
    }

    static void mutate(Random r, List<Member> members, List<String> topics, Map<String, Integer> partitions,
                       List<String> pool, boolean sameTopics, boolean hostile, int generation) {
        switch (r.nextInt(9)) {
            case 0: case 1: {   // members join
                int n = 1 + r.nextInt(2);
                for (int i = 0; i < n; i++)
                    members.add(newMember(r, topics, sameTopics, members.size() + i));
                break;
            }
            case 2: {           // a member leaves
                if (members.size() > 1)
                    members.remove(r.nextInt(members.size()));
                break;
            }
            case 3: {           // a member restarts: new member id, nothing owned
                Member m = members.get(r.nextInt(members.size()));
                Member fresh = new Member(memberId(r, m.instance != null ? m.instance : "consumer-restarted"));
                fresh.instance = m.instance;
                fresh.topics = m.topics;
                fresh.rack = m.rack;
                members.set(members.indexOf(m), fresh);
                break;
            }
            case 4: {           // a member changes its subscription
                Member m = members.get(r.nextInt(members.size()));
                m.topics = subset(r, topics);
                break;
            }
            case 5: {           // partitions added
                // (a deleted topic comes back, re-created)
                String t = topics.get(r.nextInt(topics.size()));
                partitions.merge(t, 1 + r.nextInt(4), Integer::sum);
                break;
            }
            case 6: {           // a new topic everybody (or someone) subscribes to
                String t = pool.get(topics.size() % pool.size());
                if (!topics.contains(t)) {
                    topics.add(t);
                    partitions.put(t, 1 + r.nextInt(6));
                    for (Member m : members)
                        if (sameTopics || r.nextBoolean())
                            m.topics.add(t);
                }
                break;
            }
            case 7: {           // a topic disappears from metadata, or (hostile) shrinks
                String t = topics.get(r.nextInt(topics.size()));
                if (!partitions.containsKey(t))
                    break;
                if (hostile && partitions.get(t) > 1)
                    partitions.put(t, 1 + r.nextInt(partitions.get(t) - 1));
                else if (r.nextBoolean())
                    partitions.remove(t);
                break;
            }
            default: {          // members joined in another order
                Collections.shuffle(members, r);
                break;
            }
        }
    }

    static void hostility(Random r, List<Member> members, Map<String, Integer> partitions, int generation) {
        for (Member m : members) {
            switch (r.nextInt(12)) {
                case 0: {       // claims a partition someone else owns, same generation
                    Member other = members.get(r.nextInt(members.size()));
                    if (!other.owned.isEmpty())
                        m.owned.add(other.owned.get(r.nextInt(other.owned.size())));
                    break;
                }
                case 1: {       // a stale member: an older generation
                    m.generation = Math.max(-1, generation - 1 - r.nextInt(3));
                    break;
                }
                case 2:         // a huge generation
                    m.generation = Integer.MAX_VALUE - r.nextInt(2);
                    break;
                case 3: {       // claims random partitions, maybe nonexistent
                    for (int i = 0; i < 3; i++) {
                        String t = TOPIC_POOL[r.nextInt(TOPIC_POOL.length)];
                        m.owned.add(new TopicPartition(t, r.nextInt(20) - 2));
                    }
                    break;
                }
                case 4:         // an old client: generation only in userData (v1) or nowhere (v0)
                    m.version = (short) r.nextInt(2);
                    break;
                case 5:         // broken userData
                    m.rawUserData = randomBytes(r, r.nextInt(6));
                    break;
                case 6:         // claims its own partition twice
                    if (!m.owned.isEmpty())
                        m.owned.add(m.owned.get(0));
                    break;
                case 7:         // duplicate topics in its subscription
                    if (!m.topics.isEmpty())
                        m.topics.add(m.topics.get(0));
                    break;
                case 8:         // subscribed to nothing (a pattern matching no topic)
                    m.topics = new ArrayList<>();
                    break;
                case 9:         // the assignor's generation differs from the member's
                    m.assignorGeneration = r.nextInt(3) == 0 ? Integer.valueOf(-7) : Integer.valueOf(generation + 5);
                    break;
                default:
                    break;
            }
        }
    }

    static byte[] randomBytes(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    // ------------------------------------------------------------- edge cases

    static Member member(String id, String... topics) {
        Member m = new Member(id);
        m.topics = new ArrayList<>(List.of(topics));
        return m;
    }

    static Member owning(Member m, int generation, Object... topicPartitionPairs) {
        for (int i = 0; i < topicPartitionPairs.length; i += 2)
            m.owned.add(new TopicPartition((String) topicPartitionPairs[i], (Integer) topicPartitionPairs[i + 1]));
        m.generation = generation;
        m.assignorGeneration = generation;
        return m;
    }

    static Case edge(List<Case> out, String name, String assignor, Object... topicCounts) {
        Case c = new Case(name, assignor);
        for (int i = 0; i < topicCounts.length; i += 2)
            c.partitions.put((String) topicCounts[i], (Integer) topicCounts[i + 1]);
        out.add(c);
        return c;
    }

    /** All strings of `n` blocks of "Aa" / "BB": 2^n strings with one Java hashCode. */
    static List<String> sameHash(String prefix, int n) {
        List<String> out = new ArrayList<>();
        for (int mask = 0; mask < (1 << n); mask++) {
            StringBuilder sb = new StringBuilder(prefix);
            for (int i = 0; i < n; i++)
                sb.append((mask & (1 << i)) != 0 ? "BB" : "Aa");
            out.add(sb.toString());
        }
        return out;
    }

    static void edgeCases(List<Case> out) {
        for (String a : List.of(COOP, STICKY)) {
            edge(out, a + "/no-members", a, "t", 3);
            edge(out, a + "/one-member-no-topics", a, "t", 3).members.add(member("c1"));
            edge(out, a + "/topic-without-metadata", a, "t", 3).members.add(member("c1", "missing"));
            Case c = edge(out, a + "/more-members-than-partitions", a, "t", 2);
            for (int i = 0; i < 5; i++)
                c.members.add(member("c" + i, "t"));
            c = edge(out, a + "/javadoc-example", a, "t0", 2, "t1", 2, "t2", 2, "t3", 2);
            for (int i = 0; i < 3; i++)
                c.members.add(member("C" + i, "t0", "t1", "t2", "t3"));
            c = edge(out, a + "/different-subscriptions", a, "t0", 1, "t1", 2, "t2", 3);
            c.members.add(member("C0", "t0"));
            c.members.add(member("C1", "t0", "t1"));
            c.members.add(member("C2", "t0", "t1", "t2"));
        }

        // KIP-429: two members own everything, a third joins: what moves is
        // first revoked, and given in the follow-up rebalance.
        Case c = edge(out, "kip429/third-member-joins", COOP, "t", 6);
        c.members.add(owning(member("c1", "t"), 3, "t", 0, "t", 1, "t", 2));
        c.members.add(owning(member("c2", "t"), 3, "t", 3, "t", 4, "t", 5));
        c.members.add(member("c3", "t"));
        c = edge(out, "kip429/follow-up", COOP, "t", 6);
        c.members.add(owning(member("c1", "t"), 4, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 4, "t", 3, "t", 4));
        c.members.add(owning(member("c3", "t"), 4));
        c = edge(out, "kip429/member-leaves", COOP, "t", 6);
        c.members.add(owning(member("c1", "t"), 4, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 4, "t", 3, "t", 4));

        // Conflicting claims and generations.
        c = edge(out, "conflict/same-generation", COOP, "t", 4);
        c.members.add(owning(member("c1", "t"), 5, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 5, "t", 1, "t", 2));
        c.members.add(owning(member("c3", "t"), 5, "t", 1, "t", 3));
        c = edge(out, "conflict/newer-generation-wins", COOP, "t", 4);
        c.members.add(owning(member("c1", "t"), 4, "t", 0, "t", 1, "t", 2));
        c.members.add(owning(member("c2", "t"), 5, "t", 1, "t", 2));
        c.members.add(owning(member("c3", "t"), 3, "t", 2, "t", 3));
        c = edge(out, "conflict/general-path", COOP, "t", 4, "u", 3);
        c.members.add(owning(member("c1", "t", "u"), 4, "t", 0, "t", 1, "u", 0));
        c.members.add(owning(member("c2", "t"), 5, "t", 1, "t", 2));
        c.members.add(owning(member("c3", "u"), 4, "u", 0, "u", 1));
        c = edge(out, "conflict/claims-own-partition-twice", COOP, "t", 3);
        c.members.add(owning(member("c1", "t"), 2, "t", 0, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 2, "t", 2));
        c = edge(out, "generation/userdata-only-v1", COOP, "t", 4);
        c.members.add(owning(member("c1", "t"), 7, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 6, "t", 1, "t", 2, "t", 3));
        c.members.get(0).version = 1;
        c.members.get(1).version = 1;
        c = edge(out, "generation/huge", COOP, "t", 4);
        c.members.add(owning(member("c1", "t"), Integer.MAX_VALUE, "t", 0, "t", 1, "t", 2));
        c.members.add(owning(member("c2", "t"), 3, "t", 2, "t", 3));
        c = edge(out, "generation/truncated-userdata", COOP, "t", 4);
        c.members.add(owning(member("c1", "t"), 2, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t"), 1, "t", 1, "t", 2, "t", 3));
        c.members.get(0).version = 1;
        c.members.get(0).rawUserData = new byte[]{0, 7};
        c.members.get(1).version = 1;
        c = edge(out, "generation/negative-userdata", COOP, "t", 4, "u", 2);
        c.members.add(owning(member("c1", "t"), 2, "t", 0, "t", 1));
        c.members.add(owning(member("c2", "t", "u"), 1, "t", 1, "t", 2, "u", 0));
        c.members.get(0).version = 1;
        c.members.get(0).rawUserData = new byte[]{(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xfb};

        // Inputs where Kafka's own result is not valid.
        c = edge(out, "kafka-invalid/owned-partition-beyond-count", COOP, "t", 2);
        c.members.add(owning(member("c1", "t"), 3, "t", 0, "t", 5, "t", -1));
        c.members.add(owning(member("c2", "t"), 3, "t", 1));
        c = edge(out, "kafka-invalid/empty-subscription", COOP, "t", 4);
        for (String id : List.of("a", "b", "c", "d", "e"))
            c.members.add(member(id, "t"));
        c.members.add(member("0-subscribed-to-nothing"));
        c = edge(out, "kafka-invalid/duplicate-topic", COOP, "t", 3, "u", 3);
        c.members.add(member("c1", "t", "u"));
        c.members.add(member("c2", "t", "t"));

        // A member behind by a generation, no longer subscribed to the
        // topic it owned: Kafka moves the partition back to it anyway.
        c = edge(out, "kafka-invalid/previous-owner-unsubscribed", COOP, "t", 4, "u", 4);
        c.members.add(owning(member("a", "u"), 3, "t", 0, "t", 1));
        c.members.add(owning(member("b", "t", "u"), 4, "t", 0, "t", 1, "t", 2, "t", 3, "u", 0, "u", 1, "u", 2, "u", 3));
        c.members.add(owning(member("c", "t", "u"), 4));

        // Member order is Java's HashMap order: colliding hashCodes keep
        // JoinGroup order, resizes at 13 and 25 members, and a bucket of 9
        // resizes the table early.
        for (int n : new int[]{4, 9, 10}) {
            List<String> ids = sameHash("m", n == 4 ? 2 : 4).subList(0, n);
            for (boolean reversed : new boolean[]{false, true}) {
                List<String> order = new ArrayList<>(ids);
                if (reversed)
                    Collections.reverse(order);
                c = edge(out, "hash/same-hash-" + n + (reversed ? "-reversed" : ""), COOP, "t", 2 * n + 1);
                int p = 0;
                for (String id : order) {
                    Member m = member(id, "t");
                    owning(m, 3, "t", p++, "t", p++ % (2 * n + 1), "t", (p + 3) % (2 * n + 1));
                    c.members.add(m);
                }
            }
        }
        for (int n : new int[]{12, 13, 24, 25, 49}) {
            c = edge(out, "hash/members-" + n, COOP, "t", n + 3, "u", 2);
            for (int i = 0; i < n; i++) {
                Member m = member("consumer-" + i + "-" + new UUID(i * 7919L, i * 104729L), "t", "u");
                owning(m, 9, "t", i, "t", (i * 5 + 1) % (n + 3));
                c.members.add(m);
            }
        }

        // Strings compare as UTF-16 like Java.
        c = edge(out, "unicode/member-order", COOP, "t", 5);
        for (String id : List.of("\uffff-a", "\ud83d\ude00-b", "\u00e9-c", "z-d", "\ud800\udc00-e"))
            c.members.add(member(id, "t"));
        c.members.get(0).owned.add(new TopicPartition("t", 0));
        c.members.get(0).owned.add(new TopicPartition("t", 1));
        c.members.get(0).generation = 1;
        c.members.get(1).owned.add(new TopicPartition("t", 2));
        c.members.get(1).generation = 1;

        // Static members and racks (ignored without broker racks).
        c = edge(out, "static/members", COOP, "t", 5, "u", 3);
        for (int i = 0; i < 4; i++) {
            Member m = member("pod-" + i + "-" + new UUID(i, 42), "t", "u");
            m.instance = "pod-" + (3 - i);
            m.rack = i % 2 == 0 ? "rack-a" : null;
            c.members.add(m);
        }

        // Sticky (eager) userData: previous assignment and generation;
        // version 0 layout without the generation; broken bytes.
        c = edge(out, "sticky/userdata", STICKY, "t", 4, "u", 4, "v", 2);
        Member m1 = member("c1", "t", "u", "v");
        m1.assignorGeneration = 8;
        m1.generation = 8;
        m1.previous = List.of(new TopicPartition("v", 1), new TopicPartition("t", 3), new TopicPartition("u", 0),
            new TopicPartition("t", 0), new TopicPartition("u", 2));
        Member m2 = member("c2", "t", "u", "v");
        m2.assignorGeneration = 7;
        m2.generation = 7;
        m2.previous = List.of(new TopicPartition("t", 3), new TopicPartition("t", 1));
        Member m3 = member("c3", "t", "u", "v");
        m3.rawUserData = stickyV0(Map.of("u", List.of(1, 3), "v", List.of(0)));
        Member m4 = member("c4", "t", "u", "v");
        m4.rawUserData = new byte[]{0, 0, 0, 1, 0, 1};
        c.members.addAll(List.of(m1, m2, m3, m4));
    }

    /** The version 0 StickyAssignor userData: the previous assignment only. */
    static byte[] stickyV0(Map<String, List<Integer>> assignment) {
        ByteBuffer b = ByteBuffer.allocate(1024);
        Map<String, List<Integer>> sorted = new LinkedHashMap<>(new TreeMap<>(assignment));
        b.putInt(sorted.size());
        sorted.forEach((topic, ps) -> {
            byte[] name = topic.getBytes(StandardCharsets.UTF_8);
            b.putShort((short) name.length);
            b.put(name);
            b.putInt(ps.size());
            ps.forEach(b::putInt);
        });
        b.flip();
        return toArray(b);
    }
}
