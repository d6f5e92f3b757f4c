"""Router data: route utterances, calibration/test sets and conversations.

Department scope (no overlap):
  hr       leave, vacation, sickness, parental leave, contracts, probation,
           notice, working time, overtime (taken as time off), remote work,
           training budget, benefits (bike leasing, counselling), onboarding,
           reviews, HR portal
  it       all computers, phones, accounts, passwords, software, network,
           printing, email, storage
  finance  expenses, receipts, invoices, suppliers, payroll, payday,
           payslips, salary payments, corporate cards, budgets, cost centres
Facilities, security badges, travel safety, company history, sustainability,
customers and shipments belong to no department: those texts are "none".

Hand-written pools are split deterministically: each department pool gives
25 route utterances, the rest is halved between calib and test; template
fills use disjoint frame/filler lists for calib and test, so no phrasing is
shared between the files.
"""

ROUTE_UTTERANCES = 25
PER_FILE = {"in_scope_per_dept": 55, "out_of_scope": 60, "followup": 75}

IN_SCOPE = {
    "hr": [
        "How many vacation days do I get?",
        "Can I take next Friday off?",
        "I need to book two weeks of holiday in August.",
        "How does parental leave work?",
        "My wife is pregnant, what leave can I take?",
        "What's the probation period for new starters?",
        "I'm sick today, who do I tell?",
        "Do I need a doctor's note for two days of illness?",
        "Can I work from home on Fridays?",
        "How many home office days are allowed?",
        "What's the notice period if I resign?",
        "I want to quit, how do I hand in my notice?",
        "Is there a budget for training courses?",
        "Can the company pay for my language course?",
        "Is there someone I can talk to confidentially about stress?",
        "Do we have a bike leasing scheme?",
        "Can I take a sabbatical next year?",
        "How many hours a week is full time?",
        "What are the core hours?",
        "Can I switch to part-time after my parental leave?",
        "What happens to vacation days I didn't use?",
        "How do I log my overtime?",
        "When is the next welcome day for new hires?",
        "Who is my onboarding buddy?",
        "When are performance reviews held?",
        "How do I apply for an internal job?",
        "I'd like to request a reference letter.",
        "How do I report harassment at work?",
        "I'm getting married in June, do I get special leave?",
        "My father passed away, how much bereavement leave do I get?",
        "Can I update my emergency contact?",
        "Where do I change my home address in my personnel file?",
        "How do I request unpaid leave?",
        "My fixed-term contract ends in March, will it be extended?",
        "Who approves my holiday request?",
        "Is there a mentoring program?",
        "Can I go to my child's doctor's appointment during work hours?",
        "Can I work remotely from Spain for a few weeks?",
        "How do I request a change in my working hours?",
        "Are there any wellbeing benefits?",
        "Do we get extra days off for long service?",
        "How does the promotion process work?",
        "Where can I see how many leave days I have left?",
        "I'd like to nominate a colleague for the employee award.",
        "Is there a works council I can contact?",
        "I broke my leg skiing and will be out for weeks.",
        "My manager and I disagree about my appraisal, who can I talk to?",
        "How long is maternity leave?",
        "Can fathers take parental leave too?",
        "Where is the HR portal?",
        "What counts as overtime?",
        "How do I apply for a sabbatical?",
        "I'd like to reduce my hours to 30 per week.",
        "Do interns get vacation days?",
        "Can I donate unused vacation days to a colleague?",
        "How do I register a sick day?",
        "Is my probation review scheduled automatically?",
        "Can I take time off to volunteer?",
        "My team lead wants me to work on Saturday, is that allowed?",
        "I'm starting a part-time degree, can I get study leave?",
        "What's the process for a job title change?",
        "I need a confirmation of employment for my landlord.",
        "Can I take care leave for a sick parent?",
        "Do new employees get a buddy?",
        "Who do I talk to about a conflict with my manager?",
        "When does my probation end?",
        "Can I take half days of vacation?",
        "How far in advance do I have to request time off?",
        "How many days of special leave do I get when I move house?",
        "How do I sign up for a leadership training?",
        "I'd like to take three weeks off in October, is that okay?",
        "Can I take leave during my probation?",
        "My son is sick, can I stay home to look after him?",
        "Do part-timers get the same number of holidays?",
        "I want to move from full-time to 80 percent.",
        "How do I tell the company that I'm pregnant?",
        "Is there paternity leave?",
        "Can I extend my parental leave?",
        "What happens if I resign during probation?",
        "Can my notice period be shortened?",
        "Can I use my learning budget for an online course?",
        "Is there an employee counselling hotline?",
        "Can I lease an e-bike for my partner?",
        "How do I cancel a holiday I already booked?",
        "I have a medical appointment tomorrow morning, do I need to take leave?",
        "When will I get my annual performance review?",
        "Can I work four longer days instead of five?",
        "Who is my HR business partner?",
        "I need a certificate of employment for a visa application.",
        "Can I carry over vacation if I was on sick leave?",
        "My manager hasn't approved my leave request yet.",
        "Are we allowed to work on public holidays?",
        "What's the policy on side jobs?",
        "Is there support for caring for elderly relatives?",
        "Can I get time off to appear in court?",
        "How do I become a mentor for new colleagues?",
        "My flexitime balance looks wrong.",
        "Can my probation review happen earlier?",
        "How do I apply for a transfer to the Tolvik site?",
        "Where do I report a sick day if I can't reach my manager?",
    ],
    "it": [
        "My laptop won't connect to the wifi.",
        "I forgot my password.",
        "The VPN keeps disconnecting.",
        "How do I set up my email on my phone?",
        "My screen is flickering.",
        "Outlook keeps crashing.",
        "I can't print anything.",
        "How do I install a new program?",
        "My account is locked.",
        "The projector in the meeting room won't show my laptop screen.",
        "My keyboard stopped working.",
        "I need access to the shared drive of the sales team.",
        "How do I reset my MFA on a new phone?",
        "I got a suspicious email asking for my login.",
        "My laptop battery drains really fast.",
        "Can I get a second monitor?",
        "Teams audio isn't working in calls.",
        "How do I connect to the internal network from home?",
        "I need a new laptop, mine is five years old.",
        "My headset isn't recognized.",
        "How do I share a large file with a customer securely?",
        "I accidentally deleted a folder, can it be restored?",
        "My docking station doesn't charge the laptop.",
        "How do I change my password?",
        "I can't open attachments in my email.",
        "The internet is super slow on my laptop.",
        "My laptop is making a weird noise.",
        "I spilled coffee on my keyboard.",
        "My phone isn't getting work emails anymore.",
        "I need admin rights to install a driver.",
        "The scanner won't send to my email.",
        "How do I set up an out-of-office reply in Outlook?",
        "Can I use my personal phone for work emails?",
        "The warehouse scanner app won't log me in.",
        "I need a user account for an intern starting Monday.",
        "My calendar invites aren't showing up.",
        "Excel freezes when I open large files.",
        "How much storage do I have left on my drive?",
        "My laptop screen cracked.",
        "The Bluetooth mouse keeps disconnecting.",
        "How do I encrypt a USB stick?",
        "Someone might have used my login, what do I do?",
        "I can't join video calls, the camera is black.",
        "My mailbox is full.",
        "I don't have access to the ticket portal.",
        "How do I create a distribution list?",
        "My laptop won't turn on.",
        "Windows update is stuck at 30 percent.",
        "How do I connect a visitor to the guest wifi?",
        "Can you unlock my account?",
        "I clicked on a link in a strange email.",
        "My laptop says the disk is full.",
        "How do I install the VPN on my new laptop?",
        "I need a company phone.",
        "My authenticator app stopped working.",
        "I'm getting a certificate error in my browser.",
        "Can I get a bigger mailbox?",
        "My computer restarted overnight and I lost my work.",
        "Where do I download software without admin rights?",
        "The printer on the second floor keeps jamming.",
        "I can't hear anything through my speakers.",
        "How do I map a network drive?",
        "My files aren't syncing.",
        "Can I get Adobe Acrobat installed?",
        "My username is spelled wrong in the system.",
        "I need remote access for a contractor.",
        "The login page keeps rejecting my password even though it's correct.",
        "My laptop charger is broken.",
        "How do I set up my email signature?",
        "My webcam isn't working.",
        "The wifi in the Tolvik break room keeps dropping.",
        "I can't find the follow-me print queue.",
        "My laptop fan is always running.",
        "Outlook says my password is wrong.",
        "I can't connect to the VPN from the hotel.",
        "My second screen stays black when I dock my laptop.",
        "How do I restore an older version of a file?",
        "I need a licence for Visio.",
        "Teams won't let me share my screen.",
        "My phone was stolen and it has my work email on it.",
        "I need a new keyboard and mouse.",
        "Can I install WhatsApp on my work phone?",
        "The barcode scanner at dock 5 won't pair.",
        "My laptop is stuck on the login screen.",
        "How do I give a colleague access to my calendar?",
        "I'm getting a lot of spam lately.",
        "Can you set up a laptop for a new colleague?",
        "My email signature looks broken on mobile.",
        "The Excel macro stopped working after the update.",
        "My microphone is too quiet in video calls.",
        "How do I check which software version I have?",
        "The intranet page won't load.",
        "I need to recover a deleted email.",
        "My USB stick is blocked.",
        "My screen resolution is all wrong.",
        "Do I need to leave my laptop on overnight for updates?",
        "I get an error when syncing my files.",
        "My keyboard layout switched to another language.",
        "Who can reset my authenticator?",
        "How do I set up a shared mailbox?",
    ],
    "finance": [
        "When do we get paid this month?",
        "How do I submit a taxi receipt?",
        "What's the meal allowance when travelling?",
        "My salary hasn't arrived yet.",
        "Who approves invoices over 5,000 EUR?",
        "Where do I find my payslip?",
        "How much can I spend on a hotel?",
        "I lost a receipt, can I still claim the expense?",
        "How do I get reimbursed for mileage?",
        "A supplier says their invoice hasn't been paid.",
        "What's the limit on my corporate card?",
        "Which cost centre should I book this on?",
        "When does the fiscal year start?",
        "Can I get an advance for my trip to the trade fair?",
        "My expense claim was rejected.",
        "How long does reimbursement take?",
        "There's a mistake on my payslip.",
        "My tax code changed, who updates that for payroll?",
        "Where do I send a vendor invoice?",
        "How do I raise a purchase order?",
        "When is the deadline to submit expenses?",
        "Can I expense a client dinner?",
        "Is VAT charged correctly on this invoice?",
        "How do I split a hotel bill between two cost centres?",
        "My bonus wasn't included in my salary.",
        "When is the budget planning deadline?",
        "How do I pay a supplier abroad?",
        "I was charged twice on my corporate card.",
        "How are per diems calculated for trips abroad?",
        "Who can sign off on my team's invoices?",
        "I need my annual salary statement for my tax return.",
        "How do I return unused travel advance money?",
        "When will my expense reimbursement be paid out?",
        "How do I get a corporate credit card?",
        "Is parking at the airport reimbursable?",
        "What's the process for paying an urgent invoice?",
        "How do I add a new supplier to the system?",
        "My bank details changed, where do I update them for my salary?",
        "Can I get reimbursed for a train ticket I bought last month?",
        "What exchange rate is used for foreign receipts?",
        "How much do we reimburse per kilometre?",
        "Where is my salary statement for December?",
        "A customer paid twice, how do we refund them?",
        "How do I check the remaining budget for my department?",
        "Can I claim the cost of a work lunch with my team?",
        "A vendor wants to be paid in advance, is that possible?",
        "Which email address do invoices go to?",
        "How do I book an invoice to the right cost centre?",
        "Is the salary paid earlier in December?",
        "How do I get a credit note from a supplier?",
        "My meal expenses exceeded the daily limit.",
        "Do I need the original paper receipt?",
        "How do I report costs for a customer event?",
        "Who do I talk to about a wrong deduction on my pay?",
        "When is the next supplier payment run?",
        "We need to send an invoice to a customer, who creates it?",
        "Can I pay for a conference with my corporate card?",
        "What's the process for month-end closing?",
        "When does the new budget year begin?",
        "How do I claim hotel costs?",
        "My travel expenses from last month haven't been paid.",
        "Can I get my salary paid into two bank accounts?",
        "Is there a limit on how much I can claim for dinner?",
        "The supplier invoice has the wrong VAT number.",
        "How do I request a payment to a freelancer?",
        "Where can I see my year-to-date earnings?",
        "How do I approve an invoice in the system?",
        "Why is my net pay lower this month?",
        "Can I expense a taxi home after a late shift?",
        "Who handles the accruals for year-end?",
        "Can I claim parking fees from a client visit?",
        "How do I enter receipts in a foreign currency?",
        "When will the supplier invoice from last month be paid?",
        "My corporate card was blocked.",
        "I need to cancel a purchase order.",
        "How do I pay back a colleague who bought my train ticket?",
        "Can I get my payslip sent by post?",
        "Which VAT rate applies to hotel stays abroad?",
        "How do I charge costs to a customer project?",
        "Our team budget is overspent, what now?",
        "Can I get an advance on my salary?",
        "I was paid the wrong amount this month.",
        "Where do I upload a receipt from my phone?",
        "The meal allowance for my trip seems too low.",
        "Is a taxi to the airport covered?",
        "How are restaurant tips handled in expense claims?",
        "Can I expense a business book?",
        "A supplier changed their bank account, what do we do?",
        "How do I pay an invoice by credit card?",
        "Who can approve my expense report while my manager is away?",
        "Can I get reimbursed for a visa fee?",
        "When is the payroll cut-off for changes?",
        "Why was my expense claim only partly reimbursed?",
        "What's the meal rate for the day I travel home?",
        "Can I book a hotel above the limit if everything else is full?",
        "My reimbursement went to the wrong bank account.",
        "Do I need a purchase order for a new supplier contract?",
        "How do I record a prepayment?",
        "When does finance close the books this month?",
        "Where do I see the status of my expense claim?",
    ],
}

# Template fills for in-scope texts: neutral frames x department topics.
IN_SCOPE_FRAMES = {
    "calib": [
        "I have a question about {t}.",
        "Who can help me with {t}?",
        "Can you tell me more about {t}?",
        "I need some information on {t}.",
        "Can you help me with {t}?",
    ],
    "test": [
        "I'm confused about {t}.",
        "I'd like some help with {t}.",
        "What do I need to know about {t}?",
        "Who should I ask about {t}?",
        "I've got a question regarding {t}.",
    ],
}
IN_SCOPE_TOPICS = {
    "hr": ["my vacation days", "parental leave", "the probation period", "sick leave",
           "working from home", "my notice period", "the training budget", "counselling support",
           "bike leasing", "a sabbatical", "flexitime", "leftover holiday days",
           "overtime hours", "the onboarding programme", "special leave for my wedding",
           "my performance review", "unpaid leave", "switching to part-time", "my employment contract",
           "an internal job application"],
    "it": ["the VPN", "my password", "my laptop", "an IT ticket", "the office wifi",
           "two-factor authentication", "the printer", "a laptop replacement", "a phishing email",
           "installing software", "my cloud storage", "a locked account", "a company phone",
           "the weekly updates", "my email account", "the docking station", "a second monitor",
           "my headset", "a shared drive", "my webcam"],
    "finance": ["my expense claim", "the meal allowance", "a supplier invoice", "my salary payment",
                "mileage reimbursement", "the hotel limit", "a missing receipt", "my corporate card",
                "our payment terms", "the accounts payable mailbox", "a cost centre", "my payslip",
                "a travel advance", "the fiscal year", "a purchase order", "my department budget",
                "a double charge on my card", "VAT on an invoice", "a train ticket reimbursement",
                "changing my bank details for payroll"],
}

OUT_OF_SCOPE = [
    # general knowledge and chit-chat
    "What's the capital of Portugal?", "Who painted the Mona Lisa?", "How far is the Moon from the Earth?",
    "Tell me a joke.", "How are you today?", "What's your favourite movie?",
    "Who won the football World Cup in 2014?", "What's the tallest building in the world?",
    "Why is the sky blue?", "How many bones are in the human body?", "What does a koala eat?",
    "Recommend a good book for the weekend.", "What's a good name for a goldfish?",
    "Explain the rules of chess briefly.", "How do I improve my running pace?",
    "What's the best way to learn Spanish?", "Can you write a poem about the sea?",
    "What's the difference between a crocodile and an alligator?",
    # coding help
    "How do I reverse a list in Python?", "Write a SQL query that counts rows per customer.",
    "What's the difference between let and const in JavaScript?", "Explain recursion with an example.",
    "How do I center a div in CSS?", "What does git rebase do?", "Write a regex that matches an email address.",
    "What is a REST API?", "How do I read a CSV file with pandas?",
    # recipes and weather
    "How do I make pancakes?", "What's a quick vegetarian dinner idea?", "How long should I boil an egg?",
    "Give me a recipe for tomato soup.", "Will it snow this weekend?", "Do I need an umbrella today?",
    "What's the weather forecast for tomorrow?",
    # other Altavia topics no adapter covers (facilities, security, travel safety,
    # history, sustainability, customers and shipments)
    "When does the canteen open?", "Where can visitors park at headquarters?",
    "Where do I pick up a visitor badge?", "I lost my access badge.", "Who founded Altavia?",
    "What is our CO2 reduction target?", "How many electric trucks do we have?",
    "The heating in meeting room 3 isn't working.", "The coffee machine on the first floor is broken.",
    "Is it safe to travel to the trade fair alone?", "Who do I call in an emergency abroad?",
    "Where is the first aid kit in the warehouse?", "Do I need a hi-vis vest in the yard?",
    "What's the status of shipment AV-20931?", "Can you give me a quote for two pallets to Rotterdam?",
    "A customer wants to change the delivery address of their order.", "Where is the Tolvik hub?",
    "What's the speed limit on the warehouse site?", "Can I bring my dog to the office?",
    "Where is the nearest bus stop to headquarters?", "What's on the canteen menu today?",
    "When was the Marrow Bay office opened?", "Where do I recycle old batteries?",
    "How do I get a forklift licence renewed?", "Which gate do trucks use for deliveries?",
    "Can you draft a LinkedIn post about our new depot?", "What's our company motto?",
    "Is there a charging station for electric cars at the office?", "Who is our CEO?",
    "A driver reported a damaged pallet at the dock.", "Where are the fire extinguishers on the second floor?",
    "Where can I lock my bike at the office?", "How do I translate this customs form into French?",
    "What's the postcode of the Brennsby office?", "Are dogs allowed in the canteen?",
    "Which customers did we win last quarter?", "The elevator in building A is stuck.",
    "Where can I smoke on the premises?", "What should I do if there's a fire alarm?",
    # a few more general ones
    "What's 15 percent of 240?", "Translate 'good luck' into Italian.", "Summarize the plot of Hamlet.",
    "Suggest a name for our five-a-side football team.", "How do I convert Celsius to Fahrenheit?",
]

OUT_OF_SCOPE_TEMPLATES = {
    "calib": (["What's the capital of {x}?", "What language do they speak in {x}?", "What currency is used in {x}?"],
              ["Peru", "Kenya", "Finland", "Vietnam", "Chile", "Egypt", "Poland", "Canada"]),
    "test": (["Tell me something interesting about {x}.", "What's the best time of year to visit {x}?",
              "What food is {x} famous for?"],
             ["Iceland", "Morocco", "Thailand", "Argentina", "Greece", "Nepal", "Ireland", "Mexico"]),
}

FOLLOWUPS = [
    "Could you give me their postcode?", "And what about next year?", "Can you explain that again more simply?",
    "What if it's more than that?", "Who do I send it to?", "Where do I find that?", "How long does that take?",
    "Is that the same in every office?", "Why is that?", "Are you sure about that?", "What's the deadline?",
    "Can I do it online?", "What if I miss it?", "And if my manager says no?", "Can you repeat the last part?",
    "What does that mean exactly?", "How do I do that?", "Is there a form for it?", "Okay, and after that?",
    "Does that change if I'm abroad?", "And the exceptions?", "Can you give me an example?",
    "Is that per month or per year?", "And before that?", "Thanks, and the other one?", "Which one is better?",
    "How much is it?", "Can I get that in writing?", "Who is responsible for it?", "And what if it's urgent?",
    "Can someone do it for me?", "Does it work on weekends?", "And my colleague too?", "Is there a limit?",
    "What happens if I forget?", "Since when is that the rule?", "Can you send me the link?",
    "What's the next step?", "Is that new?", "Do I need approval for that?", "And how do I check it?",
    "Could you shorten that?", "Can you put that in bullet points?", "Can you say that in German?",
    "And for the second one?", "Where exactly?", "How often?", "Who decides?", "And if it's already too late?",
    "Okay. What else should I know?", "Does that include weekends?", "And in my case?", "What if I'm new?",
    "Same question for last month.", "What did you say about the limit?", "Could you give me the phone number?",
    "What was the name again?", "Sorry, which one?", "Can you spell that?", "Can it be extended?",
    "What if I disagree?", "Do I have to do it myself?", "Can I ask someone else?", "Does my manager need to know?",
    "What if they don't answer?", "How do I know it worked?", "What's the address?", "Where do I sign?",
    "And the amount?", "Can you summarize?", "What does the rule say exactly?", "Is that still current?",
    "Is that true for everyone?", "Can you check that for me?", "And on Fridays?", "And tomorrow?",
    "What time?", "How long is it valid?", "Can I change it later?", "Okay, and how do I cancel it?",
    "Hmm, that doesn't sound right.", "Is that the final answer?", "What about the rest?", "And if not?",
    "Why does it take so long?", "Could you give me more detail?", "What would you recommend?", "Really? Since when?",
    "Who else should I inform?", "Do I have to pay anything?",
]

FOLLOWUP_TEMPLATES = {
    "calib": (["And what about {x}?", "Does that also apply to {x}?", "Is it the same for {x}?",
               "Is that different for {x}?"],
              ["part-time staff", "contractors", "interns", "my colleague", "the other office",
               "managers", "people abroad", "temporary staff"]),
    "test": (["How does it work for {x}?", "Any difference for {x}?", "What changes for {x}?",
              "Does the same go for {x}?"],
             ["next year", "last year", "new starters", "apprentices", "the night shift", "students",
              "my team", "people in Tolvik"]),
}

# (department, fact id whose canonical answer is the assistant turn, user question, follow-up)
CONVERSATIONS = [
    ("hr", "hr_vacation_days", "How many vacation days do we get at Altavia?", "And what about part-timers?"),
    ("hr", "hr_parental_leave", "What's the parental leave policy?", "Does that also apply if we adopt?"),
    ("hr", "hr_probation", "How long is probation here?", "Can it be extended?"),
    ("hr", "hr_sick_note", "I'm ill, when do I need a doctor's note?", "Who do I send it to?"),
    ("hr", "hr_remote_work", "Can I work from home?", "Is that the same for managers?"),
    ("hr", "hr_notice_period", "How much notice do I have to give if I leave?", "And if my manager agrees to let me go earlier?"),
    ("hr", "hr_training_budget", "Is there money for courses?", "What if I don't use it all?"),
    ("hr", "hr_sabbatical", "Can I take a sabbatical?", "Do I need approval for that?"),
    ("hr", "hr_carryover", "What happens to unused vacation?", "Are there any exceptions?"),
    ("hr", "hr_bike_leasing", "Do we have bike leasing?", "Can I get two?"),
    ("it", "it_vpn", "How do I connect to our systems from home?", "And if it doesn't work?"),
    ("it", "it_password", "What are the password rules?", "What happens if I forget it?"),
    ("it", "it_helpdesk", "How do I reach IT support by phone?", "And on weekends?"),
    ("it", "it_laptop", "Which laptop will I get?", "Can I choose a different one?"),
    ("it", "it_ticket_portal", "How do I report a broken monitor?", "How long does it usually take?"),
    ("it", "it_mfa", "Which app do I need for MFA?", "What if I lose my phone?"),
    ("it", "it_printing", "How does printing work here?", "And if I forgot my badge?"),
    ("it", "it_storage", "How much storage do I have?", "Can I get more?"),
    ("it", "it_lockout", "I'm locked out of my account.", "Can someone speed that up?"),
    ("it", "it_maintenance", "When are updates installed?", "What if I'm travelling that day?"),
    ("finance", "fin_meal_allowance", "What's the meal allowance on trips?", "And abroad?"),
    ("finance", "fin_expense_deadline", "How long do I have to submit expenses?", "What if I miss it?"),
    ("finance", "fin_invoice_approval", "Who approves big invoices?", "And if they're on holiday?"),
    ("finance", "fin_payday", "When is payday?", "What about December?"),
    ("finance", "fin_mileage", "What's the mileage rate?", "Is that the same for motorbikes?"),
    ("finance", "fin_hotel_cap", "How much can I spend on hotels?", "What if everything is more expensive during the fair?"),
    ("finance", "fin_receipts", "Do I need receipts for everything?", "What if I lost it?"),
    ("finance", "fin_corporate_card", "What's the corporate card limit?", "Can it be raised?"),
    ("finance", "fin_payslip", "Where do I find my payslip?", "Can I get older ones too?"),
    ("finance", "fin_travel_advance", "Can I get a travel advance?", "How fast will I get it?"),
]


def _fill(templates, fillers):
    return [t.format(x=x) for t in templates for x in fillers]


def _take(pool, n, used):
    out = []
    for text in pool:
        if len(out) == n:
            break
        if norm(text) not in used:
            used.add(norm(text))
            out.append(text)
    if len(out) < n:
        raise ValueError(f"pool too small: need {n}, got {len(out)}")
    return out


def norm(text):
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").strip()


def build_routing(rng):
    """Return (routes, {"calib": rows, "test": rows})."""
    used = set()
    routes = {}
    split = {"calib": [], "test": []}
    for dept, pool in IN_SCOPE.items():
        pool = list(pool)
        rng.shuffle(pool)
        routes[dept] = _take(pool, ROUTE_UTTERANCES, used)
        rest = pool[ROUTE_UTTERANCES:]
        half = len(rest) // 2
        hand = {"calib": rest[:half], "test": rest[half:]}
        for part in ("calib", "test"):
            frames = IN_SCOPE_FRAMES[part]
            templated = [f.format(t=t) for f in frames for t in IN_SCOPE_TOPICS[dept]]
            rng.shuffle(templated)
            need = PER_FILE["in_scope_per_dept"] - len(hand[part])
            texts = _take(hand[part], len(hand[part]), used) + _take(templated, need, used)
            split[part] += [{"text": t, "label": dept, "kind": "in_scope"} for t in texts]

    for kind, pool, templates in (("out_of_scope", OUT_OF_SCOPE, OUT_OF_SCOPE_TEMPLATES),
                                  ("followup", FOLLOWUPS, FOLLOWUP_TEMPLATES)):
        pool = list(pool)
        rng.shuffle(pool)
        half = len(pool) // 2
        hand = {"calib": pool[:half], "test": pool[half:]}
        for part in ("calib", "test"):
            templated = _fill(*templates[part])
            rng.shuffle(templated)
            need = PER_FILE[kind] - len(hand[part])
            texts = _take(hand[part], len(hand[part]), used) + _take(templated, need, used)
            split[part] += [{"text": t, "label": "none", "kind": kind} for t in texts]

    for part in split:
        rng.shuffle(split[part])
    return routes, split


def build_conversations(facts_by_id):
    rows = []
    for dept, fact_id, question, followup in CONVERSATIONS:
        rows.append({"messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": facts_by_id[fact_id].answer},
            {"role": "user", "content": followup},
        ], "label": dept})
    return rows
